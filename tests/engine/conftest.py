"""Engine fixtures: two simulator sites on loopback, a real SQLite state file, real connectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.engine.worker import QueueWorker
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, open_database


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=1, webhook_retry_delays=(0.05, 0.1)) as sim:
        yield sim


def make_config(cluster: SimCluster, **sync: Any) -> AppConfig:
    sites = {
        name: {"url": site.url, "timeout_seconds": 2.0, "requests_per_second": 2000, "max_concurrency": 8,
               "circuit_reset_seconds": 0.3}
        for name, site in cluster.sites.items()
    }
    retry = {"max_attempts": 3, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}
    return AppConfig.model_validate({"sites": sites, "sync": {"retry": retry, "batch_size": 50, **sync}})


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """SQLite by default; in a module marked `backends`, each backend in turn (see tests/conftest.py)."""
    database = open_database(db_url)
    yield database
    database.dispose()


EngineFactory = Callable[..., SyncEngine]


@pytest.fixture
async def make_engine(cluster: SimCluster, db: Database) -> AsyncIterator[EngineFactory]:
    connectors: list[FrappeConnector] = []

    def make(**sync: Any) -> SyncEngine:
        config = make_config(cluster, **sync)
        conns = {
            name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, max_retries=3,
                                  backoff_base=0.01, backoff_max=2.0)
            for name, site in cluster.sites.items()
        }
        connectors.extend(conns.values())
        return SyncEngine(config, db, conns)

    yield make
    for connector in connectors:
        await connector.aclose()


@pytest.fixture
def worker_for() -> Callable[[SyncEngine], QueueWorker]:
    return lambda engine: QueueWorker(engine, owner="test-worker")

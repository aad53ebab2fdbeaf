"""Engine fixtures: two simulator sites on loopback, a real SQLite state file, real connectors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
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


class LosePostAnswers(httpx.AsyncBaseTransport):
    """The site processes every insert, but the answers of the first `count` never arrive."""

    def __init__(self, count: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.to_lose = count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and "/api/resource/" in str(request.url) and self.to_lose > 0:
            await response.aread()
            self.to_lose -= 1
            raise httpx.ReadError("connection reset after the request was processed", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def lossy_engine(cluster: SimCluster, db: Database) -> AsyncIterator[Callable[..., SyncEngine]]:
    """An engine whose first `lose` inserts on site `on` (local unless told) lose their answers."""
    made: list[FrappeConnector] = []

    def make(lose: int = 1, *, on: str = "local", **sync: Any) -> SyncEngine:
        config = make_config(cluster, **sync)
        connectors = {
            name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, max_retries=0,
                                  backoff_base=0.01, transport=LosePostAnswers(lose) if name == on else None)
            for name, site in cluster.sites.items()
        }
        made.extend(connectors.values())
        return SyncEngine(config, db, connectors)

    yield make
    for connector in made:
        await connector.aclose()

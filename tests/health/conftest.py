"""Health-check fixtures: two simulator sites on loopback, a real SQLite state file, real connectors."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, open_database


@pytest.fixture(scope="session")
def sim() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=3) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def clean_faults(sim: SimCluster) -> Iterator[None]:
    for site in sim:
        site.clear_faults()
    yield
    for site in sim:
        site.clear_faults()


def free_port() -> int:
    """A loopback port nothing listens on (bound, read and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_config(sim: SimCluster, *, sites: dict[str, dict[str, Any]] | None = None, **sections: Any) -> AppConfig:
    """A config for the simulator; `sites` overrides per-site keys, other keywords replace whole sections."""
    base = {name: {"url": site.url, "timeout_seconds": 2.0, "requests_per_second": 1000} for name, site in
            sim.sites.items()}
    for name, changes in (sites or {}).items():
        base[name] = {**base[name], **changes}
    sections.setdefault("webhooks", {"port": free_port()})
    return AppConfig.model_validate({"sites": base, **sections})


@pytest.fixture
def config(sim: SimCluster) -> AppConfig:
    return make_config(sim)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """SQLite by default; in a module marked `backends`, each backend in turn (see tests/conftest.py)."""
    database = open_database(db_url)
    yield database
    database.dispose()


@pytest.fixture
async def connectors(sim: SimCluster, config: AppConfig) -> AsyncIterator[dict[str, FrappeConnector]]:
    made = {
        name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, max_retries=0)
        for name, site in sim.sites.items()
    }
    yield made
    for connector in made.values():
        await connector.aclose()


def credentials(sim: SimCluster) -> dict[str, tuple[str, str]]:
    return {name: (site.api_key, site.api_secret) for name, site in sim.sites.items()}

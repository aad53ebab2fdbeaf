"""Fixtures: one simulator cluster for the whole run (real uvicorn servers on loopback), connectors per test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors import CircuitBreaker, FrappeConnector
from erpsync_tui.sim import SimCluster

MakeConnector = Callable[..., FrappeConnector]


@pytest.fixture(scope="session")
def sim_cluster() -> Iterator[Any]:
    with SimCluster(["cloud", "local"], seed=0) as cluster:
        yield cluster


@pytest.fixture
def cloud(sim_cluster: Any) -> Iterator[Any]:
    site = sim_cluster["cloud"]
    site.clear_faults()
    yield site
    site.clear_faults()


@pytest.fixture
async def make_connector(cloud: Any) -> AsyncIterator[MakeConnector]:
    """Build connectors to the `cloud` sim site (fast retries by default); all are closed after the test."""
    made: list[FrappeConnector] = []

    def make(
        *,
        site: Any = None,
        url: str | None = None,
        api_secret: str | None = None,
        circuit: CircuitBreaker | None = None,
        max_retries: int = 4,
        backoff_base: float = 0.01,
        backoff_max: float = 5.0,
        **site_options: Any,
    ) -> FrappeConnector:
        target = site or cloud
        options = {"timeout_seconds": 5.0, "requests_per_second": 1000.0, **site_options}
        config = SiteConfig(url=url or target.url, **options)
        connector = FrappeConnector(
            target.name,
            config,
            target.api_key,
            target.api_secret if api_secret is None else api_secret,
            circuit=circuit,
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
        )
        made.append(connector)
        return connector

    yield make
    for connector in made:
        await connector.aclose()

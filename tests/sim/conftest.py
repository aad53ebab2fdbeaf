"""Fixtures for the simulator tests: real uvicorn servers on loopback, httpx clients, a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sim_helpers import WebhookReceiver, api_client

from erpsync_tui.sim import SimCluster, SimSite


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=0, webhook_retry_delays=(0.05, 0.1)) as running:
        yield running


@pytest.fixture
def site(cluster: SimCluster) -> SimSite:
    return cluster["cloud"]


@pytest.fixture
def client(site: SimSite) -> Iterator[httpx.Client]:
    with api_client(site) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver()
    yield hook
    hook.close()

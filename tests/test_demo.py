"""The demo's fault cycle and what it tells the operator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from erpsync_tui import demo
from erpsync_tui.sim import SimCluster


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=1) as sim:
        yield sim


def test_fault_cycle_leaves_operator_faults_alone(cluster: SimCluster, monkeypatch) -> None:
    monkeypatch.setattr(demo, "FAULT_EVERY_S", 0.05)
    monkeypatch.setattr(demo, "FAULT_FOR_S", 0.05)
    site = cluster["local"]
    site.set_faults(revoked=True)  # the operator revokes the key to see what the console says
    cycle = demo.FaultCycle(cluster)
    cycle.start()
    try:
        time.sleep(0.6)  # several cycles
        assert site.faults.revoked and site.faults.error_rate == 0  # no 500s added, the revocation kept
        site.set_faults(revoked=False)
        deadline = time.monotonic() + 5
        while site.faults.error_rate == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert site.faults.error_rate == demo.DEMO_ERROR_RATE  # with nothing injected, the cycle runs again
        site.set_faults(hang=False, latency_ms=1)  # an operator change meanwhile
    finally:
        cycle.stop()
    assert site.faults.error_rate in (0, demo.DEMO_ERROR_RATE)


def test_demo_names_its_database_sites_and_a_free_receiver_port(cluster: SimCluster, tmp_path: Path) -> None:
    about = demo.about_text(cluster, tmp_path / "state.db")
    assert str(tmp_path / "state.db") in about and cluster["cloud"].url in about and cluster["local"].url in about
    config = demo.demo_config(cluster, tmp_path / "state.db")
    assert config.webhooks.port != 0  # the configuration names the port the receiver binds

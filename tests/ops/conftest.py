"""Fixtures for the operator commands: two simulator sites and a CLI runner bound to them (as test_cli_engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sim_config import FAST_FAILING, QUICK_RETRIES, cli_invoker, config_yaml, site_env

from erpsync_tui.sim import SimCluster


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=3) as sim:
        yield sim


@pytest.fixture
def config_file(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(cluster, site_options=FAST_FAILING,
                                  extra="sync:\n  conflict_resolution: latest_timestamp\n" + QUICK_RETRIES))
    for var, value in site_env(cluster).items():
        monkeypatch.setenv(var, value)
    return config


@pytest.fixture
def run(cluster: SimCluster, config_file: Path, tmp_path: Path) -> Callable[..., Result]:
    return cli_invoker(cluster, config_file, tmp_path / "state.db")

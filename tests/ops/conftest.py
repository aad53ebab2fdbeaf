"""Fixtures for the operator commands: two simulator sites and a CLI runner bound to them (as test_cli_engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from erpsync_tui.cli import cli
from erpsync_tui.sim import SimCluster


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=3) as sim:
        yield sim


@pytest.fixture
def config_file(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        "sites:\n"
        f"  cloud:\n    url: {cluster['cloud'].url}\n    timeout_seconds: 2\n    circuit_reset_seconds: 0.2\n"
        f"  local:\n    url: {cluster['local'].url}\n    timeout_seconds: 2\n    circuit_reset_seconds: 0.2\n"
        "sync:\n  conflict_resolution: latest_timestamp\n  retry: {max_attempts: 2, backoff_base_seconds: 0.01}\n"
    )
    for name, site in cluster.sites.items():
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_KEY", site.api_key)
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_SECRET", site.api_secret)
    return config


@pytest.fixture
def run(cluster: SimCluster, config_file: Path, tmp_path: Path):
    db = tmp_path / "state.db"

    def invoke(*args: str) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(config_file), "--db", str(db), *args])
        for name, site in cluster.sites.items():
            assert site.api_secret not in result.output, f"secret of {name} printed by {args}"
        return result

    return invoke

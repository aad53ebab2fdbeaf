"""Document identity: two simulator sites, the CLI (or the engine) on a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from erpsync_tui.cli import cli
from erpsync_tui.sim import SimCluster


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=5) as sim:
        yield sim


class Cli:
    """`erpsync-tui` with a config written for the test's two sites; `sync` options set per test."""

    def __init__(self, cluster: SimCluster, folder: Path) -> None:
        self.cluster, self.folder = cluster, folder
        self.config = folder / "config.yaml"
        self.db = folder / "state.db"
        self.write_config()

    def write_config(self, sync_yaml: str = "  doctypes: [Customer, Item]\n  conflict_resolution: manual\n") -> None:
        sites = "".join(f"  {name}:\n    url: {site.url}\n    timeout_seconds: 5\n    circuit_reset_seconds: 0.2\n"
                        for name, site in self.cluster.sites.items())
        self.config.write_text(
            f"sites:\n{sites}sync:\n{sync_yaml}  retry: {{max_attempts: 2, backoff_base_seconds: 0.01}}\n")

    def __call__(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(self.config), "--db", str(self.db), *args], input=input)
        for site in self.cluster.sites.values():
            assert site.api_secret not in result.output
        return result


@pytest.fixture
def run(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name, site in cluster.sites.items():
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_KEY", site.api_key)
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_SECRET", site.api_secret)
    return Cli(cluster, tmp_path)


def content(doc: dict[str, Any] | None) -> dict[str, Any]:
    """A document's business content (what an operator compares), without names and stamps."""
    assert doc is not None
    skip = {"name", "owner", "creation", "modified", "modified_by", "idx", "doctype", "docstatus"}
    return {k: v for k, v in doc.items() if k not in skip and v not in (None, "")}

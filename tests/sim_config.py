"""One config builder for tests that run the CLI or `serve` against simulator sites (they each wrote their own).

    config.write_text(config_yaml(cluster, site_options=FAST_FAILING, extra="sync:\n  doctypes: [Customer]\n"))
    monkeypatch.setenv(...) for each of site_env(cluster), or env={**os.environ, **site_env(cluster)}
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from click.testing import CliRunner, Result

from erpsync_tui.cli import cli
from erpsync_tui.sim import SimCluster

# Sites that fail fast and recover fast: a test waits seconds, not the production defaults' minutes.
FAST_FAILING = {"timeout_seconds": 2, "circuit_reset_seconds": 0.2}
QUICK_RETRIES = "  retry: {max_attempts: 2, backoff_base_seconds: 0.01}\n"  # a line under `sync:`


def config_yaml(cluster: SimCluster, *, site_options: Mapping[str, object] | None = None, extra: str = "") -> str:
    """config.yaml text: a `sites:` entry per simulator site (each with `site_options`), then `extra` as is."""
    options = "".join(f"    {key}: {value}\n" for key, value in (site_options or {}).items())
    sites = "".join(f"  {name}:\n    url: {site.url}\n{options}" for name, site in cluster.sites.items())
    return f"sites:\n{sites}{extra}"


def site_env(cluster: SimCluster) -> dict[str, str]:
    """The environment variables that give each simulator site's credentials."""
    env = {}
    for name, site in cluster.sites.items():
        env[f"ERPSYNC_{name.upper()}_API_KEY"] = site.api_key
        env[f"ERPSYNC_{name.upper()}_API_SECRET"] = site.api_secret
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_invoker(cluster: SimCluster, config: Path, db: Path) -> Callable[..., Result]:
    """`erpsync-tui --config CONFIG --db DB ARGS…` in-process; fails the test if any output holds a site's secret."""

    def invoke(*args: str) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(db), *args])
        for name, site in cluster.sites.items():
            assert site.api_secret not in result.output, f"secret of {name} printed by {args}"
        return result

    return invoke

"""Shared pieces for the hostile-input and secret-scan tests: configs, CLI runs, engines on SimCluster sites."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database

# Distinctive credentials: none of these strings may ever appear in any output, log or state column.
SECRETS = {
    "cloud": ("KEYcloud7f3aQz", "SECRETcloud9b1cXw0kP"),
    "local": ("KEYlocal2d8eRy", "SECRETlocal4e6aMv7nQ"),
}
WEBHOOK_SECRET = "WHSECRET5c0ffee7e11a"


def all_secret_values() -> list[str]:
    return [value for pair in SECRETS.values() for value in pair] + [WEBHOOK_SECRET]


def install_secrets(cluster: SimCluster) -> dict[str, str]:
    """Give each simulator site the distinctive key pair; return the ERPSYNC_* environment that names them."""
    env = {"ERPSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET}
    for name, site in cluster.sites.items():
        key, secret = SECRETS[name]
        site.add_api_key(key, secret, f"sync@{name}.example")
        env[f"ERPSYNC_{name.upper()}_API_KEY"] = key
        env[f"ERPSYNC_{name.upper()}_API_SECRET"] = secret
    return env


def config_text(cluster: SimCluster | None, *, verify_tls: bool = True, extra: str = "") -> str:
    urls = ({name: site.url for name, site in cluster.sites.items()} if cluster is not None
            else {"cloud": "http://127.0.0.1:9", "local": "http://127.0.0.1:10"})
    text = "sites:\n"
    for name, url in urls.items():
        text += (f"  {name}:\n    url: {url}\n    timeout_seconds: 2\n    circuit_reset_seconds: 0.2\n"
                 f"    verify_tls: {'true' if verify_tls else 'false'}\n")
    text += "sync:\n  conflict_resolution: manual\n  retry: {max_attempts: 2, backoff_base_seconds: 0.01}\n"
    return text + extra


def run_cli(config: Path, db: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m erpsync_tui --config C --db D ARGS` as a real process (its own interpreter, no test state)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db", str(db), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def make_config(cluster: SimCluster, **sync: Any) -> AppConfig:
    sites = {
        name: {"url": site.url, "timeout_seconds": 10.0, "requests_per_second": 2000, "max_concurrency": 8,
               "circuit_reset_seconds": 0.3}
        for name, site in cluster.sites.items()
    }
    retry = {"max_attempts": 3, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}
    return AppConfig.model_validate({"sites": sites, "sync": {"retry": retry, "batch_size": 50, **sync}})


def make_engine(cluster: SimCluster, db: Database, **sync: Any) -> SyncEngine:
    config = make_config(cluster, **sync)
    conns = {
        name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, max_retries=3,
                              backoff_base=0.01, backoff_max=2.0)
        for name, site in cluster.sites.items()
    }
    return SyncEngine(config, db, conns)


async def close_engine(engine: SyncEngine) -> None:
    for connector in engine.connectors.values():
        await connector.aclose()

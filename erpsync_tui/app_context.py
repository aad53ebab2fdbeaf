"""The one place the product is wired together: credentials, connectors, the engine and the webhook receiver.

`serve`, the console, the demo and the CLI's one-shot commands build what they run here, from a config:
- credentials: `gather_credentials`, the only loop over the sites' secrets (keyring or environment);
- connectors: `build_connectors` → `connectors.site_connectors`, the only place a config becomes connectors;
- the engine: `build_engine` (a SyncEngine for one-shot commands) or `build_service` (serve, console, demo);
- the receiver: `receiver_starter`, in the engine's process or as receiver processes (`webhooks.workers`).
It imports engine/ and webhooks/ and is imported by cli.py, cli_ops.py, demo.py and tui/ only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erpsync_tui import secrets
from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector, site_connectors
from erpsync_tui.engine.batch_pool import BatchPool
from erpsync_tui.store import Database

if TYPE_CHECKING:
    from erpsync_tui.engine.service import EngineService, ReceiverStarter
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")

Credentials = dict[str, tuple[str, str]]  # site → (api_key, api_secret)


def warn_insecure_tls(config: AppConfig) -> list[str]:
    """TLS verification may be off only loudly: one warning per site at every start."""
    warnings = []
    for name, site in config.sites.items():
        if not site.verify_tls:
            message = (f"TLS verification is OFF for site {name} ({site.base_url}): anyone on the network path "
                       f"can read and alter synced data; set sites.{name}.verify_tls: true")
            log.warning("code=ERP001 %s", message)
            warnings.append(message)
    return warnings


def gather_credentials(
    config: AppConfig, *, on_missing: Callable[[secrets.MissingSecret], None] | None = None, log_source: bool = False
) -> Credentials:
    """(api_key, api_secret) of each synced site, from the keyring or the environment.

    Without `on_missing`, a site without credentials raises MissingSecret (the CLI's usage error); with it, the
    site is reported there and left out (health checks then say "no credentials" for it).
    """
    found: Credentials = {}
    for name in config.pair:
        try:
            creds = secrets.site_credentials(name)
        except secrets.MissingSecret as exc:
            if on_missing is None:
                raise
            on_missing(exc)
            continue
        if log_source:
            log.info("site=%s credentials from %s", name, creds.source)
        found[name] = (creds.api_key, creds.api_secret)
    return found


def build_connectors(config: AppConfig, credentials: Credentials | None = None) -> dict[str, FrappeConnector]:
    """One connector per synced site; credentials from the keyring or the environment unless given."""
    if credentials is None:
        credentials = gather_credentials(config, log_source=True)
    return site_connectors(config, credentials)


def build_batch_pool(config: AppConfig, db_url: str, processes: int | None = None) -> BatchPool | None:
    """Batch processes for full sync (`sync.workers`, or `processes`); None for none. Not yet started."""
    count = config.sync.workers if processes is None else processes
    if count <= 0:
        return None
    return BatchPool(config, db_url, gather_credentials(config), count)


def build_engine(config: AppConfig, db: Database, *, actor: str) -> SyncEngine:
    """A SyncEngine on this configuration's sites and database, for a one-shot command (`sync`, `match`, …)."""
    from erpsync_tui.engine.sync import SyncEngine

    return SyncEngine(config, db, build_connectors(config), actor=actor)


def build_service(
    config: AppConfig,
    db: Database,
    *,
    connectors: dict[str, FrappeConnector] | None = None,
    start_receiver: ReceiverStarter | None = None,
    config_file: Path | None = None,
) -> EngineService:
    """The engine service (lease, queue worker, scheduler, receiver) as `serve`, the console and the demo run it."""
    from erpsync_tui.engine.service import EngineService

    return EngineService(config, db, build_connectors(config) if connectors is None else connectors,
                         config_file=config_file, start_receiver=start_receiver,
                         lease_ttl=config.scheduler.lease_ttl_seconds)


# ============================================================================================== receiver


def receiver_starter(log_level: str, log_file: Path | None) -> ReceiverStarter:
    async def start(service: EngineService) -> Any:
        if service.config.webhooks.workers > 0:
            return await start_receiver_processes(service, log_level, log_file)
        return await start_receiver(service)

    return start


def webhook_secret() -> str | None:
    return secrets.lookup(secrets.WEBHOOK_REF).value


async def start_receiver_processes(service: EngineService, log_level: str, log_file: Path | None) -> Any:
    """`webhooks.workers` receiver processes beside the engine's; their commits wake the queue at once."""
    from erpsync_tui.webhooks.processes import ReceiverProcesses

    receivers = ReceiverProcesses(service.config, service.db, webhook_secret=webhook_secret(),
                                  metrics=service.metrics, on_stored=service.wake, log_level=log_level,
                                  log_file=log_file)
    return await receivers.start()


async def start_receiver(service: EngineService, *, secret: str | None = None) -> Any:
    """The webhook receiver inside the engine's event loop; stored events wake the queue at once.

    `secret`: the webhook secret (default: from the keyring or the environment)."""
    from erpsync_tui.webhooks import create_app, serve_receiver

    config = service.config
    app = create_app(config, service.db, webhook_secret=webhook_secret() if secret is None else secret,
                     status_provider=lambda: {"engine": service.state}, on_stored=service.wake,
                     metrics=service.metrics)
    return await serve_receiver(app, config.webhooks.host, config.webhooks.port)

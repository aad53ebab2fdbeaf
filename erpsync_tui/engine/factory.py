"""Building connectors from configuration and secrets (the one place the engine reads credentials)."""

from __future__ import annotations

import logging

from erpsync_tui import secrets
from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.batch_pool import BatchPool

log = logging.getLogger("erpsync.engine")


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


def build_connectors(config: AppConfig) -> dict[str, FrappeConnector]:
    """One connector per synced site, with credentials from the keyring or the environment."""
    connectors = {}
    for name in config.pair:
        creds = secrets.site_credentials(name)
        log.info("site=%s credentials from %s", name, creds.source)
        connectors[name] = FrappeConnector(name, config.sites[name], creds.api_key, creds.api_secret)
    return connectors


def build_batch_pool(config: AppConfig, db_url: str, processes: int | None = None) -> BatchPool | None:
    """Batch processes for full sync (`sync.workers`, or `processes`); None for none. Not yet started."""
    count = config.sync.workers if processes is None else processes
    if count <= 0:
        return None
    credentials = {}
    for name in config.pair:
        creds = secrets.site_credentials(name)
        credentials[name] = (creds.api_key, creds.api_secret)
    return BatchPool(config, db_url, credentials, count)

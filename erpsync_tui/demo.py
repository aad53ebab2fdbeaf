"""`erpsync-tui demo`: simulated sites, live traffic, an engine and the console — nothing to configure.

Everything lives in a temporary folder and in this process: the sites run on loopback (ephemeral ports),
their webhooks point at the engine's receiver, a traffic generator edits documents on both sides (with real
conflicts and hostile text), and now and then a site misbehaves for a few seconds. All of it stops on exit.
"""

from __future__ import annotations

import asyncio
import secrets as token_source
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from erpsync_tui.app_context import build_connectors, build_service, start_receiver
from erpsync_tui.config import AppConfig
from erpsync_tui.engine.service import EngineService
from erpsync_tui.secrets import register_secret
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, open_database

FAULT_EVERY_S = 45.0  # an occasional fault, so the console has something to show and the engine to ride out
FAULT_FOR_S = 6.0
DEMO_ERROR_RATE = 0.5


def demo_config(cluster: SimCluster, db_path: Path) -> AppConfig:
    sites = {name: {"url": site.url, "timeout_seconds": 5, "circuit_reset_seconds": 5}
             for name, site in cluster.sites.items()}
    return AppConfig.model_validate({
        "sites": sites,
        "sync": {"doctypes": ["Customer", "Item", "Sales Order"], "conflict_resolution": "latest_timestamp",
                 "overrides": {"Customer": {"conflict_resolution": "manual"}},
                 "retry": {"max_attempts": 4, "backoff_base_seconds": 1, "backoff_max_seconds": 20}},
        # A port found free now, not 0: the configuration then names the port the receiver binds, so the
        # receiver health check (and `r` in the console) asks the right one.
        "webhooks": {"host": "127.0.0.1", "port": _free_port()},
        "scheduler": {"incremental_sync_interval_seconds": 10, "health_interval_seconds": 10},
        "database": {"url": f"sqlite:///{db_path}"},
    })


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def about_text(cluster: SimCluster, db_path: Path) -> str:
    """Where the demo keeps its state and sites, so the CLI can be pointed at it (printed, and shown in `?`)."""
    sites = "  ".join(f"{name}: {site.url}" for name, site in cluster.sites.items())
    return (f"demo database: {db_path}\nsites: {sites}\n"
            f"try: erpsync-tui --db sqlite:///{db_path} status")


def make_engine(cluster: SimCluster, config: AppConfig, db: Database, webhook_secret: str) -> EngineService:
    credentials = {name: (site.api_key, site.api_secret) for name, site in cluster.sites.items()}

    async def start_demo_receiver(service: EngineService) -> Any:
        handle = await start_receiver(service, secret=webhook_secret)
        for name, site in cluster.sites.items():  # point each site's Webhook doctype at the receiver
            site.add_webhook(f"{handle.url}/webhook/{name}", webhook_secret)
        return handle

    return build_service(config, db, connectors=build_connectors(config, credentials),
                         start_receiver=start_demo_receiver)


class FaultCycle:
    """Now and then one site answers 500s for a few seconds, then recovers.

    Faults an operator injected (through the simulator's fault switches) are left alone: no 500s are added
    while any is set, and recovering only takes back the error rate this cycle set.
    """

    def __init__(self, cluster: SimCluster) -> None:
        self.cluster = cluster
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        site = self.cluster["local"]
        while not self._stop.wait(FAULT_EVERY_S):
            if operator_faults(site.faults):
                continue
            ours = site.set_faults(error_rate=DEMO_ERROR_RATE)
            self._stop.wait(FAULT_FOR_S)
            if site.faults.error_rate == ours.error_rate:
                site.set_faults(error_rate=0.0)  # only what this cycle set; anything else stays


def operator_faults(faults: Any) -> bool:
    """Whether a site has faults beyond its base latency (someone injected them)."""
    return bool(faults.error_rate or faults.rate_limit_always or faults.hang or faults.drop or faults.drop_response
                or faults.revoked or faults.per_key_rps or faults.jitter_ms)


def run_demo(*, seed_docs: int, traffic: float, theme: str | None, headless: bool, seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="erpsync-demo-") as tmp, \
            SimCluster(["cloud", "local"], seed=int(time.time()) % 10_000) as cluster:
        for site in cluster:
            site.seed(seed_docs)
            register_secret(site.api_secret)
        webhook_secret = token_source.token_urlsafe(24)
        register_secret(webhook_secret)
        db_path = Path(tmp) / "state.db"
        config = demo_config(cluster, db_path)
        db = open_database(config.database.url or "")
        faults = FaultCycle(cluster)
        if traffic > 0:
            cluster.start_traffic(traffic, conflict_share=0.25, hostile_share=0.15)
        faults.start()
        about = about_text(cluster, db_path)
        print(about, flush=True)
        try:
            if headless:
                return asyncio.run(_headless(cluster, config, db, webhook_secret, seconds))
            from erpsync_tui.tui.app import run_console

            return run_console(db, config, engine_factory=lambda: make_engine(cluster, config, db, webhook_secret),
                               theme=theme, about=about)
        finally:
            faults.stop()
            cluster.stop_traffic()
            db.dispose()


async def _headless(cluster: SimCluster, config: AppConfig, db: Database, secret: str, seconds: float) -> int:
    """The same demo without a screen (for CI and smoke tests): run, then print what happened."""
    from erpsync_tui.store import queries

    service = make_engine(cluster, config, db, secret)
    await service.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await service.stop()
    with db.read() as session:
        counts, depth = queries.record_counts(session), queries.queue_depth(session)
        conflicts = queries.open_conflict_count(session)
    print(f"demo ran {seconds:g}s: tracked {counts.get('tracked', 0)}, synced {counts.get('synced', 0)}, "
          f"open conflicts {conflicts}, queue {depth.by_status}")
    return 0

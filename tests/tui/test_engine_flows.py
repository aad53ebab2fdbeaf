"""The console driving a real engine (in-process EngineThread) against two simulator sites, by keys only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import select

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.connectors.base import ValidationFailed
from erpsync_tui.engine.service import EngineService, EngineThread, engine_status
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import queue
from erpsync_tui.store.models import Conflict, QueueItem
from erpsync_tui.tui.app import ConsoleApp, run_console

from .testing import screen_text, wait_for, wait_loaded


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=1, webhook_retry_delays=(0.05,)) as sim:
        yield sim


def engine_config(cluster: SimCluster, **sync: Any) -> AppConfig:
    sites = {name: {"url": site.url, "timeout_seconds": 2.0, "requests_per_second": 2000,
                    "circuit_reset_seconds": 0.3} for name, site in cluster.sites.items()}
    retry = {"max_attempts": 2, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05}
    return AppConfig.model_validate({
        "sites": sites, "sync": {"retry": retry, **sync}, "webhooks": {"enabled": False},
        "scheduler": {"queue_interval_seconds": 0.1, "incremental_sync_interval_seconds": 3600,
                      "health_interval_seconds": 3600},
        "console": {"refresh_seconds": 0.2},
    })


def connectors(cluster: SimCluster, config: AppConfig) -> dict[str, FrappeConnector]:
    return {name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, max_retries=0,
                                  backoff_base=0.01) for name, site in cluster.sites.items()}


def customer(name: str, **extra: Any) -> dict[str, Any]:
    return {"customer_name": name, "customer_type": "Company", "customer_group": "Commercial", **extra}


def start_engine(cluster: SimCluster, db, config: AppConfig) -> EngineThread:
    thread = EngineThread(lambda: EngineService(config, db, connectors(cluster, config), owner="console-test"))
    thread.start()
    return thread


async def console(db, config: AppConfig, thread: EngineThread | None) -> ConsoleApp:
    return ConsoleApp(db, config, mode="in-process", actor="ops", host="test-host", engine_thread=thread)


async def test_resolve_a_manual_conflict_by_keys(cluster: SimCluster, db) -> None:
    config = engine_config(cluster, conflict_resolution="manual")
    engine = SyncEngine(config, db, connectors(cluster, config))
    doc = cluster["cloud"].insert("Customer", customer("Both Sides", territory="France"), fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", doc["name"])
    local_name = cluster["local"].names("Customer")[0]
    cluster["cloud"].update("Customer", doc["name"], {"territory": "Japan", "mobile_no": "+81 3"}, fire_webhooks=False)
    cluster["local"].update("Customer", local_name, {"territory": "Greece", "mobile_no": "+30 210"},
                            fire_webhooks=False)
    result = await engine.sync_document("Customer", "cloud", doc["name"])
    assert result.outcome == "conflict"
    for connector in engine.connectors.values():
        await connector.aclose()

    thread = await asyncio.to_thread(start_engine, cluster, db, config)
    try:
        app = await console(db, config, thread)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_loaded(pilot)
            await pilot.press("c")
            await wait_for(pilot, lambda: app.screen.diffs != {})
            screen = app.screen
            order = list(screen.diffs)
            assert set(order[:2]) == {"mobile_no", "territory"}  # differing fields first
            # mobile_no from local, territory from cloud (the cursor advances to the next differing field).
            picks = {"mobile_no": "l", "territory": "c"}
            await pilot.press(picks[order[0]], picks[order[1]])
            await pilot.press("a")
            await pilot.pause(0.1)
            assert "Apply resolution" in screen_text(app)
            await pilot.press("y")
            await wait_for(pilot, lambda: cluster["local"].get("Customer", local_name)["territory"] == "Japan",
                           limit=15)
        for site, name in (("cloud", doc["name"]), ("local", local_name)):
            got = cluster[site].get("Customer", name)
            assert (got["territory"], got["mobile_no"]) == ("Japan", "+30 210")
        with db.read() as s:
            assert s.exec(select(Conflict)).one().status == "resolved"
    finally:
        await asyncio.to_thread(thread.stop)


@dataclass
class DeadItem:
    """A queue item the local site's rule rejected until it died, under the cursor of the console's queue screen."""

    app: ConsoleApp
    pilot: Any
    item_id: int
    local: FrappeConnector
    real_insert: Any


@asynccontextmanager
async def dead_item_on_the_queue_screen(cluster: SimCluster, db, customer_name: str, *, max_attempts: int,
                                        rejection: str) -> AsyncIterator[DeadItem]:
    """A real engine whose local site rejects every insert (a site rule, `rejection`), a Customer's item left
    dead by it, and the console (100×30) on the queue screen with the cursor on that item; the engine stops after."""
    config = engine_config(cluster)
    doc = cluster["cloud"].insert("Customer", customer(customer_name), fire_webhooks=False)
    thread = await asyncio.to_thread(start_engine, cluster, db, config)
    local = thread.service.connectors["local"]
    real_insert = local.insert

    async def rejecting_insert(doctype, body):  # a site rule rejects it (a revoked key is an outage, not dead)
        raise ValidationFailed(rejection, site="local", status=417)

    local.insert = rejecting_insert
    try:
        with db.write() as s:
            item_id = queue.enqueue(s, site="cloud", doctype="Customer", name=doc["name"],
                                    max_attempts=max_attempts).id

        def dead() -> bool:
            with db.read() as s:
                return s.get(QueueItem, item_id).status == "dead"

        app = await console(db, config, thread)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(pilot, dead, limit=15)
            await pilot.press("q")
            await wait_for(pilot, lambda: str(item_id) in app.screen.items)
            table = app.screen.query_one("#queue-table")
            table.move_cursor(row=table.get_row_index(str(item_id)))  # the engine's own failures may list too
            yield DeadItem(app, pilot, item_id, local, real_insert)
    finally:
        await asyncio.to_thread(thread.stop)


async def test_retry_a_dead_item_by_keys_after_fixing_its_cause(cluster: SimCluster, db) -> None:
    async with dead_item_on_the_queue_screen(cluster, db, "Rejected Meanwhile", max_attempts=2,
                                             rejection="HTTP 417 ValidationError: rejected") as item:
        assert "ERP008" in screen_text(item.app)
        item.local.insert = item.real_insert
        await item.pilot.press("r")

        def done() -> bool:
            with db.read() as s:
                return s.get(QueueItem, item.item_id).status == "done"

        await wait_for(item.pilot, done, limit=15)
    assert cluster["local"].count("Customer") == 1  # created once, whatever else retried it


async def test_pause_and_resume_by_keys(cluster: SimCluster, db) -> None:
    config = engine_config(cluster)
    thread = await asyncio.to_thread(start_engine, cluster, db, config)
    try:
        app = await console(db, config, thread)
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_for(pilot, lambda: app.engine is not None and app.engine.mode == "running")
            assert "RUNNING" in screen_text(app) and "in-process" in screen_text(app)
            await pilot.press("P")
            await wait_for(pilot, lambda: engine_status(db).mode == "paused")
            await wait_for(pilot, lambda: "PAUSED" in screen_text(app))
            await pilot.press("space")
            await wait_for(pilot, lambda: engine_status(db).mode == "running")
    finally:
        await asyncio.to_thread(thread.stop)


def test_run_console_attaches_when_a_serve_holds_the_lease_and_stops_its_own_engine(cluster, db, monkeypatch):
    config = engine_config(cluster)
    seen: list[str] = []
    monkeypatch.setattr(ConsoleApp, "run", lambda self, **kw: seen.append(self.mode) or 0)
    factory = lambda: EngineService(config, db, connectors(cluster, config), owner="in-console")  # noqa: E731
    assert run_console(db, config, engine_factory=factory) == 0
    assert seen == ["in-process"] and engine_status(db).mode == "stopped"  # stopped on exit, lease released
    serve = start_engine(cluster, db, config)  # a `serve` elsewhere holds the lease
    try:
        assert run_console(db, config, engine_factory=factory) == 0
        assert seen[-1] == "attached" and engine_status(db).holder == "console-test"
        assert run_console(db, config, engine_factory=factory, readonly=True) == 0
        assert seen[-1] == "attached"
    finally:
        serve.stop()

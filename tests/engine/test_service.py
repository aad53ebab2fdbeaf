"""The engine service: one lease per database, operator actions through the database, hot config reload."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from erpsync_tui.config import load_config
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.service import EngineService, EngineThread, LeaseHeld, engine_status, submit_action
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import control, queue
from erpsync_tui.store.models import EngineLease, OperatorAction, QueueStatus, SyncLog, utcnow

from .conftest import make_config
from .test_sync import customer

pytestmark = pytest.mark.backends


def connectors_for(cluster: SimCluster, config) -> dict[str, FrappeConnector]:
    return {name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, backoff_base=0.01)
            for name, site in cluster.sites.items()}


def service_for(cluster: SimCluster, db, *, config_file: Path | None = None, **kw) -> EngineService:
    config = load_config(config_file) if config_file else make_config(cluster)
    return EngineService(config, db, connectors_for(cluster, config), config_file=config_file, **kw)


async def wait_for(predicate, limit: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit
    while not await asyncio.to_thread(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


def logged(db, outcome: str) -> bool:
    with db.read() as s:
        return s.exec(select(SyncLog).where(SyncLog.outcome == outcome)).first() is not None


def action_done(db, action_id: int) -> bool:
    row = control.action_row(db, action_id)
    return row is not None and row.status != "pending"


async def test_one_engine_per_database(cluster: SimCluster, db) -> None:
    first = service_for(cluster, db, owner="first")
    await first.start()
    try:
        second = service_for(cluster, db, owner="second")
        with pytest.raises(LeaseHeld, match="held by first"):
            await second.start()
        for connector in second.connectors.values():
            await connector.aclose()
        assert engine_status(db).mode == "running"
    finally:
        await first.stop()
    assert engine_status(db).mode == "stopped"


async def test_dead_holders_lease_expires_and_is_taken_over(cluster: SimCluster, db) -> None:
    with db.write() as s:
        s.add(EngineLease(holder="crashed", expires_at=utcnow() - timedelta(seconds=1)))
    service = service_for(cluster, db, owner="successor")
    await service.start()
    try:
        assert engine_status(db).holder == "successor"
    finally:
        await service.stop()


async def test_operator_actions_run_exactly_once(cluster: SimCluster, db) -> None:
    service = service_for(cluster, db)
    await service.start()
    await asyncio.sleep(0.5)  # the catch-up sync at start (empty sites) is over
    try:
        pause = submit_action(db, "pause", actor="ops", host="laptop")
        await wait_for(lambda: action_done(db, pause))
        assert engine_status(db).mode == "paused"
        doc = cluster["cloud"].insert("Customer", customer("While Paused"), fire_webhooks=False)
        with db.write() as s:
            queue.enqueue(s, site="cloud", doctype="Customer", name=doc["name"])
        await asyncio.sleep(0.3)
        assert cluster["local"].count("Customer") == 0  # paused: queue not processed
        resume = submit_action(db, "resume", actor="ops", host="laptop")
        await wait_for(lambda: cluster["local"].count("Customer") == 1)
        assert engine_status(db).mode == "running"
        # Another "engine" cannot claim what this one already took.
        assert control.claim_actions(db, "someone-else") == []
        with db.read() as s:
            rows = s.exec(select(OperatorAction)).all()
        assert {(r.id, r.status, r.processed_by) for r in rows} == {
            (pause, "done", service.owner), (resume, "done", service.owner)}
        with db.read() as s:
            audit = [r.message for r in s.exec(select(SyncLog)).all() if "operator ops@laptop" in r.message]
        assert len(audit) == 2
    finally:
        await service.stop()


async def test_stop_gives_back_in_flight_items_and_lease(cluster: SimCluster, db) -> None:
    service = service_for(cluster, db)
    await service.start()
    with db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Customer", name="X")
    await service.stop()
    claimed = queue.claim(db, service.owner)  # nothing was left in_progress
    assert len(claimed) <= 1
    assert engine_status(db).mode == "stopped"


async def test_engine_thread_runs_beside_the_caller(cluster: SimCluster, db) -> None:
    thread = EngineThread(lambda: service_for(cluster, db, owner="in-process"))
    await asyncio.to_thread(thread.start)
    try:
        assert engine_status(db).holder == "in-process"
        other = EngineThread(lambda: service_for(cluster, db, owner="another"))
        with pytest.raises(LeaseHeld):
            await asyncio.to_thread(other.start)
    finally:
        await asyncio.to_thread(thread.stop)
    assert engine_status(db).mode == "stopped"


async def test_config_hot_reload_good_and_bad_edit(cluster: SimCluster, db, tmp_path: Path) -> None:
    text = (
        "sites:\n"
        f"  cloud:\n    url: {cluster['cloud'].url}\n"
        f"  local:\n    url: {cluster['local'].url}\n"
        "scheduler:\n  incremental_sync_interval_seconds: 60\n"
    )
    file = tmp_path / "config.yaml"
    file.write_text(text)
    service = service_for(cluster, db, config_file=file)
    await service.start()
    try:
        assert service.job_intervals()["incremental_sync"] == 60
        await asyncio.sleep(0.5)  # let the file watcher settle in
        file.write_text(text.replace("seconds: 60", "seconds: 7"))
        await wait_for(lambda: service.job_intervals().get("incremental_sync") == 7)
        file.write_text(text.replace("seconds: 60", "seconds: seven"))
        await wait_for(lambda: logged(db, "config_rejected"))
        assert service.job_intervals()["incremental_sync"] == 7  # the running config was kept
        assert service.state == "running"
    finally:
        await service.stop()


async def test_queue_items_go_dead_and_retry_action_revives(cluster: SimCluster, db) -> None:
    config = make_config(cluster)
    service = EngineService(config, db, connectors_for(cluster, config))
    await service.start()
    await asyncio.sleep(0.5)  # the catch-up sync at start (empty sites) is over
    try:
        from erpsync_tui.connectors.base import ValidationFailed

        doc = cluster["cloud"].insert("Customer", customer("Revive Me"), fire_webhooks=False)
        local = service.connectors["local"]
        real_insert = local.insert

        async def rejecting_insert(doctype, body):  # a rule of the site rejects it (a revoked key is an outage)
            raise ValidationFailed("HTTP 417 ValidationError: rejected", site="local", status=417)

        local.insert = rejecting_insert
        with db.write() as s:
            item = queue.enqueue(s, site="cloud", doctype="Customer", name=doc["name"], max_attempts=2)
        service.wake()

        def is_dead() -> bool:
            with db.read() as s:
                return s.get(type(item), item.id).status == QueueStatus.DEAD

        await wait_for(is_dead, limit=10)
        local.insert = real_insert
        retry = submit_action(db, "retry", actor="ops", host="box", params={"ids": [item.id]})
        await wait_for(lambda: action_done(db, retry))
        assert control.action_row(db, retry).status == "done"
        await wait_for(lambda: cluster["local"].count("Customer") == 1)
    finally:
        await service.stop()


async def test_receiver_on_port_zero_reports_its_real_port(cluster: SimCluster, db) -> None:
    """With `webhooks.port: 0`, health checks and /status must see the port the OS actually chose."""
    from erpsync_tui.webhooks import create_app, serve_receiver

    async def start(service: EngineService):
        app = create_app(service.config, db, webhook_secret="s" * 16, on_stored=service.wake)
        return await serve_receiver(app, "127.0.0.1", 0)

    config = make_config(cluster)
    service = EngineService(config, db, connectors_for(cluster, config), start_receiver=start)
    await service.start()
    try:
        assert service.config.webhooks.port == service.receiver.port != 0
        from erpsync_tui.engine.health import check_receiver

        result = await check_receiver(service.config)
        assert result.status == "ok", result
    finally:
        await service.stop()


async def test_a_receiver_given_its_secret_directly_is_reported_as_having_one(cluster: SimCluster, db) -> None:
    """The demo hands its receiver the secret (none in the keyring): health must not say "no secret" (ERP006)."""
    from erpsync_tui import demo

    service = demo.make_engine(cluster, make_config(cluster), db, webhook_secret="d" * 24)
    await service.start()
    try:
        await wait_for(lambda: engine_status(db).info.get("webhook_secret") is not None)
        assert engine_status(db).info["webhook_secret"] is True
    finally:
        await service.stop()

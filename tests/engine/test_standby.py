"""A standby engine (`serve --wait`): it receives webhooks while it waits and takes the lease at the expiry
it read — on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sqlmodel import col, select

from erpsync_tui.engine.service import EngineService, engine_status
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import control
from erpsync_tui.store.models import QueueItem
from erpsync_tui.webhooks import SIGNATURE_HEADER, sign

from .conftest import make_config
from .test_service import connectors_for, wait_for
from .test_sync import customer

pytestmark = pytest.mark.backends

SECRET = "standby-webhook-secret-0123456789"
TTL = 2.0


def _standby(cluster: SimCluster, db, owner: str) -> EngineService:
    from erpsync_tui.webhooks import create_app, serve_receiver

    async def start(service: EngineService):
        app = create_app(service.config, db, webhook_secret=SECRET, on_stored=service.wake,
                         status_provider=lambda: {"engine": service.state})
        return await serve_receiver(app, "127.0.0.1", 0)

    config = make_config(cluster)
    return EngineService(config, db, connectors_for(cluster, config), owner=owner, start_receiver=start,
                         lease_ttl=TTL)


async def test_a_waiting_standby_stores_webhooks_and_takes_over_at_the_expiry(cluster: SimCluster, db) -> None:
    holder = control.acquire_lease(db, "dead-holder", ttl=TTL)  # a holder that dies now: never renewed
    standby = _standby(cluster, db, "standby")
    starting = asyncio.ensure_future(standby.start(wait_for_lease=True))
    try:
        await wait_for(lambda: standby.receiver is not None)
        assert standby.state == "waiting" and engine_status(db).holder == "dead-holder"
        doc = cluster["cloud"].insert("Customer", customer("Sent To The Standby"), fire_webhooks=False)
        body = json.dumps({"doctype": "Customer", "name": doc["name"], "modified": doc["modified"],
                           "event": "after_insert"}).encode()
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{standby.receiver.url}/webhook/cloud", content=body,
                                       headers={SIGNATURE_HEADER: sign(body, SECRET),
                                                "Content-Type": "application/json"})
        assert answer.status_code == 200  # stored while the standby waits
        with db.read() as s:
            assert [i.name for i in s.exec(select(QueueItem).order_by(col(QueueItem.id)))] == [doc["name"]]
        await asyncio.wait_for(starting, TTL + 5)
        status = engine_status(db)
        assert status.holder == "standby"
        took = (status.heartbeat_at - holder.heartbeat_at).total_seconds()
        print(f"take-over {took:.2f} s after the holder's last renewal (ttl {TTL} s)")
        assert TTL <= took <= TTL + 1.0  # at the expiry it read, not a fixed poll later
        await wait_for(lambda: cluster["local"].count("Customer") == 1, limit=10)  # the stored webhook synced
    finally:
        if not starting.done():
            await standby.stop()
            await starting
        await standby.stop()


async def test_a_standby_waits_while_the_holder_renews(cluster: SimCluster, db) -> None:
    control.acquire_lease(db, "live-holder", ttl=TTL)
    standby = _standby(cluster, db, "standby")
    starting = asyncio.ensure_future(standby.start(wait_for_lease=True))
    try:
        for _ in range(int(3 * TTL / 0.5)):  # three lease lengths, renewed every half second
            await asyncio.sleep(0.5)
            assert control.renew_lease(db, "live-holder", TTL, {})
            assert not starting.done()
        assert engine_status(db).holder == "live-holder"
        await standby.stop()  # stopping while waiting ends the wait at once
        await asyncio.wait_for(starting, 2)
        assert engine_status(db).holder == "live-holder" and standby.state == "stopped"
    finally:
        if not starting.done():
            starting.cancel()

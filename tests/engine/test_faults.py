"""The engine rides through site faults, retries into dead letter, resumes, and never duplicates a create."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlmodel import select

from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.bulk import BULK_BATCHES_IN_FLIGHT, full_sync
from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.sync import Outcome, SyncEngine
from erpsync_tui.engine.worker import QueueWorker
from erpsync_tui.sim import SimCluster
from erpsync_tui.store.models import QueueItem, QueueStatus, SyncLog, Watermark

from .conftest import make_config
from .test_sync import customer


async def converge(engine: SyncEngine, worker: QueueWorker, rounds: int = 20) -> None:
    """Retry what failed (the queue) until nothing is due, as the daemon would."""
    for _ in range(rounds):
        await asyncio.sleep(0.06)  # past the tests' short backoff
        result = await worker.drain()
        with engine.db.read() as s:
            waiting = s.exec(select(QueueItem).where(QueueItem.status.in_(["pending", "failed"]))).all()
        if result.handled == 0 and not waiting:
            return


async def assert_converged(engine: SyncEngine, doctypes=("Customer", "Item", "Sales Order")) -> None:
    for doctype in doctypes:
        report = await reconcile(engine, doctype)
        assert report.differences == [], report.as_dict()


async def test_500s_and_429s_are_ridden_through(cluster: SimCluster, make_engine, worker_for) -> None:
    cluster["cloud"].seed(15)
    engine = make_engine()
    cluster["local"].set_faults(error_rate=0.3)
    cluster["cloud"].set_faults(rate_limit_always=True, retry_after=1)  # a 429 storm for the first 0.5 s
    asyncio.get_running_loop().call_later(0.5, cluster["cloud"].clear_faults)
    summary = await full_sync(engine)
    cluster["local"].clear_faults()
    cluster["cloud"].clear_faults()
    await converge(engine, worker_for(engine))
    await full_sync(engine)
    assert summary.processed > 0
    await assert_converged(engine)
    assert any(key.endswith(" 429") for key in cluster["cloud"].counters), "the 429 limit was never hit"
    assert any(key.endswith(" 500") for key in cluster["local"].counters)


async def test_timeouts_go_to_the_queue_then_converge(cluster: SimCluster, make_engine, worker_for, db) -> None:
    cluster["cloud"].seed(3)
    engine = make_engine()
    cluster["local"].set_faults(hang=True)
    engine.connectors["local"].config = engine.connectors["local"].config.model_copy(update={"timeout_seconds": 0.3})
    summary = await full_sync(engine, doctypes=["Customer"])
    # three documents, then listing local's rename Comments and local itself (its circuit is open by then)
    assert summary.failed == 5
    with db.read() as s:
        codes = {item.error_code for item in s.exec(select(QueueItem)).all()}
    assert codes <= {"ERP007", "ERP001"}, codes  # timeout (or the circuit it opened)
    cluster["local"].clear_faults()
    await asyncio.sleep(0.4)
    await converge(engine, worker_for(engine))
    await assert_converged(engine, ["Customer"])


async def test_timestamp_mismatch_refetches_and_decides_again(cluster: SimCluster, make_engine) -> None:
    engine = make_engine()
    doc = cluster["cloud"].insert("Customer", customer("Race"), fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", doc["name"])
    local = engine.state.translate_name("Customer", "cloud", doc["name"], "local")
    cluster["cloud"].update("Customer", doc["name"], {"territory": "Japan"}, fire_webhooks=False)
    original_update = engine.connectors["local"].update
    raced = False

    async def racing_update(doctype: str, name: str, changes: dict[str, Any], **kw: Any) -> dict[str, Any]:
        nonlocal raced
        if not raced:  # someone edits local between our read and our write
            raced = True
            cluster["local"].update(doctype, name, {"mobile_no": "+81 3"}, fire_webhooks=False)
        return await original_update(doctype, name, changes, **kw)

    engine.connectors["local"].update = racing_update  # type: ignore[method-assign]
    result = await engine.sync_document("Customer", "cloud", doc["name"])
    assert raced and result.outcome == Outcome.MERGED  # re-read, saw both edits, merged instead of clobbering
    final = cluster["local"].get("Customer", local)
    assert (final["territory"], final["mobile_no"]) == ("Japan", "+81 3")
    with engine.db.read() as s:
        assert s.exec(select(SyncLog).where(SyncLog.outcome == "retry")).first() is not None


async def test_retries_reach_dead_after_max_attempts(cluster: SimCluster, make_engine, worker_for, db) -> None:
    from erpsync_tui.connectors.base import ValidationFailed

    engine = make_engine()
    doc = cluster["cloud"].insert("Customer", customer("Doomed"), fire_webhooks=False)
    local = engine.connectors["local"]
    real_insert = local.insert

    async def rejecting_insert(doctype, body):  # the site rejects this document (a rule of its own), every time
        raise ValidationFailed("POST /api/resource/Customer → HTTP 417 ValidationError: rejected by a site rule",
                               site="local", status=417, exc_type="ValidationError")

    local.insert = rejecting_insert
    from erpsync_tui.store import queue

    with db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Customer", name=doc["name"], max_attempts=3)
    worker = worker_for(engine)
    for _ in range(5):
        await asyncio.sleep(0.06)
        await worker.drain()
    with db.read() as s:
        item = s.exec(select(QueueItem)).one()
        dead_log = s.exec(select(SyncLog).where(SyncLog.outcome == "dead")).one()
    assert item.status == QueueStatus.DEAD and item.attempts == 3 and item.error_code == "ERP008"
    assert "dead after 3 attempts" in dead_log.message and dead_log.error_code == "ERP008"
    # The operator fixes the cause and retries: it syncs.
    local.insert = real_insert
    assert queue.retry(db, [item.id]) == 1
    assert (await worker.drain()).done == 1
    assert engine.state.translate_name("Customer", "cloud", doc["name"], "local") is not None


async def test_revoked_key_is_not_a_dead_letter(cluster: SimCluster, make_engine, worker_for, db) -> None:
    """401 to everything is the site's outage (tests/engine/test_site_refusal.py has the service-level test)."""
    engine = make_engine()
    cluster["cloud"].insert("Customer", customer("Waits"), fire_webhooks=False)
    cluster["local"].set_faults(revoked=True)
    await full_sync(engine, doctypes=["Customer"])
    worker = worker_for(engine)
    for _ in range(8):
        await asyncio.sleep(0.06)
        await worker.drain()
    with db.read() as s:
        items = s.exec(select(QueueItem)).all()
    assert items and all(i.status != QueueStatus.DEAD for i in items)
    assert engine.connectors["local"].circuit_state in ("auth_refused", "closed")


async def test_interrupted_full_sync_resumes_from_checkpoint(cluster: SimCluster, make_engine, db) -> None:
    cluster["cloud"].seed(60)
    engine = make_engine(batch_size=10)
    task = asyncio.create_task(full_sync(engine, doctypes=["Customer"], direction="cloud_to_local"))
    while True:  # interrupt once a few batches are checkpointed
        await asyncio.sleep(0.02)
        with db.read() as s:
            mark = s.exec(select(Watermark).where(Watermark.kind == "full")).first()
        if mark is not None and mark.value:
            break
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    done_before = cluster["local"].count("Customer")
    assert 0 < done_before < 60
    cluster["cloud"].reset_counters()
    resumed = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert cluster["local"].count("Customer") == 60  # every customer once: no duplicates, none missing
    # Started near the checkpoint, not from the top: the checkpoint may trail what was written by the batches
    # that were in flight when the run stopped (they are adopted on resume, not created again).
    assert resumed.processed <= 60 - done_before + BULK_BATCHES_IN_FLIGHT * 10


class LoseFirstPostResponse(httpx.AsyncBaseTransport):
    """The site processes the first insert, but its answer never arrives (a dropped connection)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and self.lost == 0:
            await response.aread()
            self.lost += 1
            raise httpx.ReadError("connection reset after the request was processed", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_create_after_lost_response_makes_no_duplicate(cluster: SimCluster, db, worker_for) -> None:
    config = make_config(cluster)
    lossy = LoseFirstPostResponse()
    connectors = {
        "cloud": FrappeConnector("cloud", config.sites["cloud"], cluster["cloud"].api_key,
                                 cluster["cloud"].api_secret, backoff_base=0.01),
        "local": FrappeConnector("local", config.sites["local"], cluster["local"].api_key,
                                 cluster["local"].api_secret, backoff_base=0.01, transport=lossy),
    }
    engine = SyncEngine(config, db, connectors)
    try:
        doc = cluster["cloud"].insert("Customer", customer("Lost Answer"), fire_webhooks=False)
        summary = await full_sync(engine, doctypes=["Customer"])
        assert summary.failed == 1 and lossy.lost == 1
        assert cluster["local"].count("Customer") == 1  # the create did happen
        await asyncio.sleep(0.06)
        assert (await worker_for(engine).drain()).done == 1
        assert cluster["local"].count("Customer") == 1  # and the retry found it instead of creating again
        assert engine.state.translate_name("Customer", "cloud", doc["name"], "local") is not None
        with db.read() as s:
            assert s.exec(select(SyncLog).where(SyncLog.outcome == "adopted")).first() is not None
    finally:
        for connector in connectors.values():
            await connector.aclose()


async def test_reconcile_reports_missing_and_differing(cluster: SimCluster, make_engine) -> None:
    engine = make_engine()
    doc = cluster["cloud"].insert("Customer", customer("Drift"), fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", doc["name"])
    local = engine.state.translate_name("Customer", "cloud", doc["name"], "local")
    cluster["local"].update("Customer", local, {"territory": "Egypt"}, fire_webhooks=False)
    extra = cluster["local"].insert("Customer", customer("Only Local"), fire_webhooks=False)
    before = cluster["cloud"].counters.copy()
    report = await reconcile(engine, "Customer")
    kinds = {(d.kind, tuple(d.fields)) for d in report.differences}
    assert ("fields_differ", ("territory",)) in kinds and ("missing_on:cloud", ()) in kinds
    assert extra["name"] in report.as_csv()
    writes = [k for k in cluster["cloud"].counters if k.split()[0] in ("POST", "PUT", "DELETE")]
    assert [k for k in writes if cluster["cloud"].counters[k] != before.get(k)] == []  # wrote nothing

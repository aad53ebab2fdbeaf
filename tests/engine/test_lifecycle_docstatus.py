"""Submit, cancel, amend across two simulator sites: docstatus in the order Frappe allows, amended_from translated,
server-computed status never written, refused saves as a terminal ERP008 outcome."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.engine.sync import Outcome
from erpsync_tui.engine.worker import QueueWorker
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import queue
from erpsync_tui.store.models import QueueItem, QueueKind, QueueStatus, SyncLog


def _order(cluster: SimCluster, site: str = "cloud", **extra: Any) -> dict[str, Any]:
    sim = cluster[site]
    cust = sim.insert("Customer", {"customer_name": f"Buyer {extra.pop('tag', '')}", "customer_type": "Company"},
                      fire_webhooks=False)
    code = f"LC-{len(sim.names('Item')) + 1}-{site}"
    sim.insert("Item", {"item_code": code, "item_group": "Products", "stock_uom": "Nos"}, fire_webhooks=False)
    return sim.insert("Sales Order", {"customer": cust["name"], "transaction_date": "2026-05-01",
                                      "delivery_date": "2026-05-10",
                                      "items": [{"item_code": code, "qty": 3, "rate": 7}], **extra},
                      fire_webhooks=False)


def _local(engine, name: str) -> str:
    other = engine.state.translate_name("Sales Order", "cloud", name, "local")
    assert other is not None
    return other


def _logs(db) -> list[SyncLog]:
    with db.read() as session:
        return list(session.exec(select(SyncLog)).all())


async def test_a_sales_order_submitted_on_cloud_is_submitted_on_local(cluster: SimCluster, make_engine, db) -> None:
    engine = make_engine()
    order = _order(cluster)
    assert (await engine.sync_document("Sales Order", "cloud", order["name"])).outcome == Outcome.CREATED
    # A draft edited, then submitted, before the engine looks: it arrives edited and submitted.
    cluster["cloud"].update("Sales Order", order["name"], {"delivery_date": "2026-06-01"}, fire_webhooks=False)
    cluster["cloud"].submit("Sales Order", order["name"], fire_webhooks=False)
    result = await engine.sync_document("Sales Order", "cloud", order["name"])
    assert result.outcome == Outcome.UPDATED and "submitted" in result.detail
    local = cluster["local"].get("Sales Order", _local(engine, order["name"]))
    assert (local["docstatus"], local["delivery_date"]) == (1, "2026-06-01")
    assert local["status"] == "To Deliver and Bill"  # computed by local itself: status is never sent
    assert any(log.message.startswith("updated: Sales Order") and "submitted" in log.message for log in _logs(db))
    # An allow-on-submit field still syncs after submit.
    cluster["cloud"].update("Sales Order", order["name"], {"terms": "net 14"}, fire_webhooks=False)
    assert (await engine.sync_document("Sales Order", "cloud", order["name"])).outcome == Outcome.UPDATED
    assert cluster["local"].get("Sales Order", _local(engine, order["name"]))["terms"] == "net 14"


async def test_cancelled_then_amended_on_cloud_is_cancelled_and_amended_on_local(
    cluster: SimCluster, make_engine, db
) -> None:
    engine = make_engine()
    order = _order(cluster)
    await engine.sync_document("Sales Order", "cloud", order["name"])
    local_original = _local(engine, order["name"])
    cloud = cluster["cloud"]
    cloud.submit("Sales Order", order["name"], fire_webhooks=False)
    cloud.cancel("Sales Order", order["name"], fire_webhooks=False)
    amendment = cloud.amend("Sales Order", order["name"], {"delivery_date": "2026-07-01"}, fire_webhooks=False)
    assert amendment["name"] == f"{order['name']}-1"
    # Only the amendment is reported: the engine syncs the original first (draft → submitted → cancelled there).
    result = await engine.sync_document("Sales Order", "cloud", amendment["name"])
    assert result.outcome == Outcome.CREATED and f"amended from {local_original}" in result.detail
    original_there = cluster["local"].get("Sales Order", local_original)
    assert (original_there["docstatus"], original_there["status"]) == (2, "Cancelled")
    local_amendment = cluster["local"].get("Sales Order", _local(engine, amendment["name"]))
    assert local_amendment["amended_from"] == local_original
    assert local_amendment["name"] == f"{local_original}-1"  # local's own amended naming
    assert (local_amendment["docstatus"], local_amendment["delivery_date"]) == (0, "2026-07-01")
    assert cluster["local"].count("Sales Order") == 2
    messages = [log.message for log in _logs(db)]
    assert any(m.startswith("updated: Sales Order") and m.endswith("— cancelled") for m in messages)


async def test_a_cancelled_document_never_synced_is_created_submitted_then_cancelled(
    cluster: SimCluster, make_engine
) -> None:
    engine = make_engine()
    order = _order(cluster)
    cluster["cloud"].submit("Sales Order", order["name"], fire_webhooks=False)
    cluster["cloud"].cancel("Sales Order", order["name"], fire_webhooks=False)
    summary = await full_sync(engine, doctypes=["Customer", "Item", "Sales Order"])
    assert summary.failed == 0, summary
    assert cluster["local"].get("Sales Order", _local(engine, order["name"]))["docstatus"] == 2
    second = await full_sync(engine, doctypes=["Sales Order"])
    assert second.writes == 0 and second.failed == 0


async def test_an_edit_to_a_field_not_allowed_on_submit_ends_as_an_explained_erp008_conflict_without_retries(
    cluster: SimCluster, make_engine, db
) -> None:
    engine = make_engine(field_level_merge=True)
    order = _order(cluster)
    await engine.sync_document("Sales Order", "cloud", order["name"])
    local_name = _local(engine, order["name"])
    # local submits; cloud, still a draft there, changes the delivery date: the merge would change a submitted doc.
    cluster["local"].submit("Sales Order", local_name, fire_webhooks=False)
    cluster["cloud"].update("Sales Order", order["name"], {"delivery_date": "2026-09-09"}, fire_webhooks=False)
    with db.write() as session:
        queue.enqueue(session, kind=QueueKind.WEBHOOK, site="cloud", doctype="Sales Order", name=order["name"],
                      payload={"event": "on_update"}, max_attempts=5)
    worker = QueueWorker(engine, owner="test-worker")
    await worker.drain()
    with db.read() as session:
        items = list(session.exec(select(QueueItem)).all())
    assert [i.status for i in items] == [QueueStatus.DONE]  # done at once: a terminal outcome, not a failure
    errors = [log for log in _logs(db) if log.error_code == "ERP008"]
    assert len(errors) == 1
    assert "UpdateAfterSubmitError" in errors[0].message and "Quick fix" in errors[0].message
    assert errors[0].outcome == "conflict"
    puts_before = cluster["local"].counters.get("PUT /api/resource/{doctype}/{name} 417", 0)
    assert puts_before == 1
    # Nothing changed since: asked again (incremental sync, another webhook), it does not write again.
    again = await engine.sync_document("Sales Order", "cloud", order["name"])
    assert again.outcome == Outcome.SKIPPED
    assert cluster["local"].counters.get("PUT /api/resource/{doctype}/{name} 417", 0) == puts_before
    assert cluster["local"].get("Sales Order", local_name)["delivery_date"] == "2026-05-10"


async def test_an_amendment_from_local_points_at_cloud_s_name_of_its_original_even_when_names_collide(
    cluster: SimCluster, make_engine
) -> None:
    """Series collide: local's SAL-ORD-…-00001 is another order than cloud's. The amendment made on local must
    be created on cloud amended from cloud's name of local's original — never from cloud's own namesake."""
    engine = make_engine()
    cloud_order = _order(cluster, "cloud", tag="c")
    local_order = _order(cluster, "local", tag="l")
    assert cloud_order["name"] == local_order["name"]
    cluster["local"].submit("Sales Order", local_order["name"], fire_webhooks=False)
    cluster["local"].cancel("Sales Order", local_order["name"], fire_webhooks=False)
    amendment = cluster["local"].amend("Sales Order", local_order["name"], fire_webhooks=False)
    # Only the amendment is reported, before its original was ever synced.
    result = await engine.sync_document("Sales Order", "local", amendment["name"])
    assert result.outcome == Outcome.CREATED
    original_on_cloud = engine.state.translate_name("Sales Order", "local", local_order["name"], "cloud")
    assert original_on_cloud is not None and original_on_cloud != cloud_order["name"]
    created = cluster["cloud"].get("Sales Order",
                                   engine.state.translate_name("Sales Order", "local", amendment["name"], "cloud"))
    assert created["amended_from"] == original_on_cloud
    assert created["name"] == f"{original_on_cloud}-1"
    assert cluster["cloud"].get("Sales Order", cloud_order["name"])["docstatus"] == 0  # the namesake untouched


async def test_a_transition_cut_short_moves_forward_whatever_the_policy(cluster: SimCluster, make_engine) -> None:
    """Cloud submitted and cancelled; local got only the submit (an engine killed between the two saves, before
    recording). Both sides count as changed, only docstatus differs: the later state wins even under local_wins
    — Frappe refuses to go back."""
    engine = make_engine(conflict_resolution="local_wins")
    order = _order(cluster)
    await engine.sync_document("Sales Order", "cloud", order["name"])
    local_name = _local(engine, order["name"])
    cluster["cloud"].submit("Sales Order", order["name"], fire_webhooks=False)
    cluster["cloud"].cancel("Sales Order", order["name"], fire_webhooks=False)
    cluster["local"].submit("Sales Order", local_name, fire_webhooks=False)  # the first of our two saves
    result = await engine.sync_document("Sales Order", "local", local_name)
    assert result.outcome == Outcome.UPDATED and result.direction == "cloud→local"
    assert cluster["local"].get("Sales Order", local_name)["docstatus"] == 2
    assert cluster["cloud"].get("Sales Order", order["name"])["docstatus"] == 2


async def _attendance_synced(cluster: SimCluster, make_engine, db, **sync: Any) -> tuple[Any, str, str]:
    """Attendance: submittable, no child tables — a full sync takes the bulk path for it."""
    from erpsync_tui.engine.bulk import bulk_eligible

    engine = make_engine(doctypes=["Attendance"], **sync)
    doc = cluster["cloud"].insert("Attendance", {"employee_name": "Ann", "attendance_date": "2026-01-02"},
                                  fire_webhooks=False)
    summary = await full_sync(engine)
    assert summary.failed == 0 and summary.writes == 1, summary
    assert await bulk_eligible(engine, "Attendance")
    local_name = engine.state.translate_name("Attendance", "cloud", doc["name"], "local")
    assert local_name is not None
    return engine, doc["name"], local_name


async def test_a_bulk_full_sync_refused_for_docstatus_ends_as_one_explained_erp008_conflict_without_retries(
    cluster: SimCluster, make_engine, db
) -> None:
    """cloud_to_local: cloud's draft edit is pushed onto local's submitted copy. The bulk PUT is refused
    (DocstatusTransitionError): that is the terminal ERP008 conflict with its quick fix, at once — it was handed to
    the per-document path, which sent the refused write a second time."""
    engine, name, local_name = await _attendance_synced(cluster, make_engine, db)
    cluster["local"].update("Attendance", local_name, {"docstatus": 1}, fire_webhooks=False)
    cluster["cloud"].update("Attendance", name, {"remarks": "late"}, fire_webhooks=False)
    refused_puts = "PUT /api/resource/{doctype}/{name} 417"
    summary = await full_sync(engine, direction="cloud_to_local")
    assert summary.failed == 0 and summary.outcomes["conflict"] == 1, summary
    assert cluster["local"].counters.get(refused_puts, 0) == 1
    errors = [log for log in _logs(db) if log.error_code == "ERP008"]
    assert len(errors) == 1 and "DocstatusTransitionError" in errors[0].message and "Quick fix" in errors[0].message
    with db.read() as session:
        assert list(session.exec(select(QueueItem)).all()) == []  # terminal: nothing to retry
    again = await full_sync(engine, direction="cloud_to_local")
    assert again.failed == 0 and cluster["local"].counters.get(refused_puts, 0) == 1  # not sent again
    assert cluster["local"].get("Attendance", local_name)["docstatus"] == 1


async def test_a_bulk_full_sync_brings_a_submitted_then_cancelled_document_over_in_order(
    cluster: SimCluster, make_engine, db
) -> None:
    """Submit then cancel on cloud, local still the draft: two saves (0 → 1 → 2), never one refused jump."""
    engine, name, local_name = await _attendance_synced(cluster, make_engine, db)
    cluster["cloud"].update("Attendance", name, {"remarks": "signed", "docstatus": 1}, fire_webhooks=False)
    cluster["cloud"].update("Attendance", name, {"docstatus": 2}, fire_webhooks=False)
    summary = await full_sync(engine)
    assert summary.failed == 0 and summary.outcomes.get("conflict", 0) == 0, summary
    there = cluster["local"].get("Attendance", local_name)
    assert (there["docstatus"], there["remarks"]) == (2, "signed")
    assert [log for log in _logs(db) if log.error_code == "ERP008"] == []


@pytest.mark.parametrize("meanwhile", ["nothing", "amended_on_cloud", "terms_edited_on_local"])
async def test_an_insert_then_cancel_cut_short_converges_whatever_happened_meanwhile(
    cluster: SimCluster, make_engine, db, meanwhile: str
) -> None:
    """A cancelled order never synced is inserted submitted, then cancelled; the connection drops between the two.
    The retry finds the submitted copy (its answer lost): it was taken as the copy of the cancelled content *edited
    since* — local's "change" (docstatus 2 → 1) was pushed back onto cloud, refused, and even with nothing else
    changed the order ended as an ERP008 conflict. The copy is what its first save made: the cancel follows; an
    amendment made meanwhile follows after it; a real edit of the copy on local meanwhile (an allow-on-submit
    field) ends as the explained ERP008 conflict, with nothing written over it."""
    from erpsync_tui.connectors.base import ConnectionFailed

    engine = make_engine()
    order = _order(cluster)
    cloud, local = cluster["cloud"], cluster["local"]
    cloud.submit("Sales Order", order["name"], fire_webhooks=False)
    cloud.cancel("Sales Order", order["name"], fire_webhooks=False)
    connector = engine.connectors["local"]
    real_update = connector.update

    async def cut(doctype: str, name: str, changes: Any, **kwargs: Any) -> Any:
        if doctype == "Sales Order":
            raise ConnectionFailed("connection dropped before the cancel", site="local")
        return await real_update(doctype, name, changes, **kwargs)

    connector.update = cut  # type: ignore[method-assign]
    with pytest.raises(ConnectionFailed):
        await engine.sync_document("Sales Order", "cloud", order["name"])
    connector.update = real_update  # type: ignore[method-assign]
    [copy] = local.all("Sales Order")
    assert copy["docstatus"] == 1
    if meanwhile == "amended_on_cloud":
        cloud.amend("Sales Order", order["name"], {"delivery_date": "2026-06-30"}, fire_webhooks=False)
    elif meanwhile == "terms_edited_on_local":
        local.update("Sales Order", copy["name"], {"terms": "net 30"}, fire_webhooks=False)
    await engine.sync_document("Sales Order", "cloud", order["name"])  # the queue's retry
    summary = await full_sync(engine)
    assert summary.failed == 0, summary
    assert local.count("Sales Order") == cloud.count("Sales Order")  # no duplicate
    errors = [log for log in _logs(db) if log.error_code == "ERP008"]
    if meanwhile == "terms_edited_on_local":
        assert len(errors) == 1 and "Quick fix" in errors[0].message
        assert local.get("Sales Order", copy["name"])["terms"] == "net 30"  # the edit is kept for the operator
        return
    assert errors == []
    assert local.get("Sales Order", copy["name"])["docstatus"] == 2
    if meanwhile == "amended_on_cloud":
        amendment = _local(engine, f"{order['name']}-1")
        assert local.get("Sales Order", amendment)["amended_from"] == copy["name"]
        assert local.get("Sales Order", amendment)["delivery_date"] == "2026-06-30"
    again = await full_sync(engine)
    assert again.writes == 0 and again.failed == 0


async def test_an_amendment_is_never_paired_with_the_unpaired_copy_of_its_original(
    cluster: SimCluster, lossy_engine, db
) -> None:
    """An amendment has its original's matching key (customer, date, total). The original's copy on local is
    unpaired for a while (its create's answer was lost — a kill, a dropped connection); the amendment, synced
    first, was paired with that copy by the matching rules: a cancelled order and its draft amendment as one
    document, an ERP008 conflict, and the original created a second time (the 100-kill crash harness ended so).
    A candidate must have the same original (translated), or none when the source has none."""
    from erpsync_tui.connectors.base import ConnectorError

    engine = lossy_engine(0)
    order = _order(cluster)
    cloud, local = cluster["cloud"], cluster["local"]
    assert (await full_sync(engine, doctypes=["Customer", "Item"])).failed == 0  # its links: mapped
    engine.connectors["local"]._transport.to_lose = 1  # the order's insert runs, its answer is lost
    with pytest.raises(ConnectorError):  # the lost answer: to the queue
        await engine.sync_document("Sales Order", "cloud", order["name"])
    [copy] = local.all("Sales Order")
    cloud.submit("Sales Order", order["name"], fire_webhooks=False)
    cloud.cancel("Sales Order", order["name"], fire_webhooks=False)
    amendment = cloud.amend("Sales Order", order["name"], {"delivery_date": "2026-06-30"}, fire_webhooks=False)
    await engine.sync_document("Sales Order", "cloud", amendment["name"])  # its webhook comes first
    summary = await full_sync(engine)
    assert summary.failed == 0, summary
    assert engine.state.translate_name("Sales Order", "cloud", order["name"], "local") == copy["name"]
    local_amendment = _local(engine, amendment["name"])
    assert local.get("Sales Order", local_amendment)["amended_from"] == copy["name"]
    assert local.get("Sales Order", copy["name"])["docstatus"] == 2
    assert local.count("Sales Order") == cloud.count("Sales Order") == 2  # no second copy of the original
    assert [log for log in _logs(db) if log.error_code == "ERP008"] == []

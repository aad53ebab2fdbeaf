"""Renames (rename_doc: no webhook, no Deleted Document): the name map follows — never a delete plus a create."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlmodel import select

from erpsync_tui.engine.bulk import full_sync, incremental_sync
from erpsync_tui.engine.sync import Outcome
from erpsync_tui.sim import SimCluster

NO_CUSTOMER_MATCHING = {"Customer": []}  # a renamed customer is then told only by its Comment or its content


def _discard_failed(db, name: str) -> None:
    """The operator discards the failed queue item of `name` (its one retry)."""
    from erpsync_tui.store import queue
    from erpsync_tui.store.models import QueueItem, QueueStatus

    with db.read() as s:
        items = [i.id for i in s.exec(select(QueueItem).where(
            QueueItem.name == name, QueueItem.status == QueueStatus.FAILED)).all()]
    assert queue.discard(db, items) == 1


def _world(cluster: SimCluster) -> dict[str, Any]:
    cloud = cluster["cloud"]
    cust = cloud.insert("Customer", {"customer_name": "Acme", "customer_type": "Company"}, fire_webhooks=False)
    cloud.insert("Item", {"item_code": "WIDGET", "item_group": "Products", "stock_uom": "Nos"}, fire_webhooks=False)
    order = cloud.insert("Sales Order", {"customer": cust["name"], "transaction_date": "2026-02-01",
                                         "delivery_date": "2026-02-09",
                                         "items": [{"item_code": "WIDGET", "qty": 1, "rate": 3}]},
                         fire_webhooks=False)
    return {"customer": cust["name"], "order": order["name"]}


async def _synced(engine, cluster: SimCluster) -> dict[str, Any]:
    world = _world(cluster)
    summary = await full_sync(engine)
    assert summary.failed == 0, summary
    await incremental_sync(engine)  # watermarks in place
    world["local_customer"] = engine.state.translate_name("Customer", "cloud", world["customer"], "local")
    world["local_order"] = engine.state.translate_name("Sales Order", "cloud", world["order"], "local")
    return world


def _assert_one_customer_under_local_name(cluster: SimCluster, engine, world: dict[str, Any]) -> None:
    local = cluster["local"]
    assert local.names("Customer") == [world["local_customer"]]  # no delete, no duplicate, its own name
    assert local.all("Deleted Document") == []
    assert local.get("Sales Order", world["local_order"])["customer"] == world["local_customer"]  # links intact
    assert engine.state.translate_name("Customer", "cloud", "Acme Ltd", "local") == world["local_customer"]
    assert engine.state.find("cloud", "Customer", world["customer"]) is None


@pytest.mark.parametrize("how", ["incremental", "full", "full_without_comments", "edited_then_webhook"])
async def test_a_customer_renamed_on_cloud_stays_one_document_on_local(
    cluster: SimCluster, make_engine, db, how: str
) -> None:
    engine = make_engine()
    world = await _synced(engine, cluster)
    cluster["cloud"].rename("Customer", world["customer"], "Acme Ltd")
    if how == "incremental":
        summary = await incremental_sync(engine)
    elif how == "full":
        summary = await full_sync(engine)
    elif how == "full_without_comments":  # the API user may not read Comment: recognised by content
        cluster["cloud"].set_permissions(denied_doctypes=["Comment"])
        summary = await full_sync(engine)
        assert summary.failed == 3  # the Comment listing of each doctype (403), logged with its code
        summary.failed = 0
        cluster["cloud"].set_permissions(denied_doctypes=[])
    else:  # edited after the rename, and only the edit's webhook arrives
        cluster["cloud"].update("Customer", "Acme Ltd", {"territory": "Chile"}, fire_webhooks=False)
        result = await engine.sync_document("Customer", "cloud", "Acme Ltd")
        assert result.outcome == Outcome.UPDATED
        assert cluster["local"].get("Customer", world["local_customer"])["territory"] == "Chile"
        summary = await full_sync(engine)
    assert summary.failed == 0, summary
    _assert_one_customer_under_local_name(cluster, engine, world)
    assert cluster["cloud"].count("Customer") == 1
    from erpsync_tui.store.models import SyncLog

    with db.read() as session:  # what the console's log pane shows
        said = session.exec(select(SyncLog.message).where(SyncLog.outcome == "renamed")).all()
    assert any(m.startswith(f"renamed {world['customer']} → Acme Ltd on cloud") for m in said), said
    again = await full_sync(engine)
    assert again.writes == 0 and again.failed == 0


async def test_an_item_renamed_on_cloud_is_renamed_on_local_and_its_links_follow(
    cluster: SimCluster, make_engine
) -> None:
    """Item is named from item_code: the business key changed, so the counterpart is renamed with rename_doc."""
    engine = make_engine()
    world = await _synced(engine, cluster)
    cluster["cloud"].rename("Item", "WIDGET", "WIDGET-2")
    summary = await incremental_sync(engine)
    assert summary.failed == 0, summary
    local = cluster["local"]
    assert local.names("Item") == ["WIDGET-2"]
    assert local.get("Item", "WIDGET-2")["item_code"] == "WIDGET-2"
    assert local.get("Sales Order", world["local_order"])["items"][0]["item_code"] == "WIDGET-2"
    assert local.all("Deleted Document") == []
    again = await full_sync(engine)
    assert again.writes == 0 and again.failed == 0


async def test_a_rename_on_one_site_then_an_edit_on_the_other_is_no_delete_and_no_re_create(
    cluster: SimCluster, make_engine
) -> None:
    """The edit's webhook comes first: the engine finds the counterpart's old name gone (404). The rename Comment
    says where it went — not a delete, so the edit-wins-over-delete rule must not re-create it."""
    engine = make_engine()
    world = await _synced(engine, cluster)
    cluster["local"].rename("Customer", world["local_customer"], "Acme Local")
    cluster["cloud"].update("Customer", world["customer"], {"territory": "Norway"}, fire_webhooks=False)
    result = await engine.sync_document("Customer", "cloud", world["customer"])
    assert result.outcome == Outcome.UPDATED, result
    assert cluster["local"].names("Customer") == ["Acme Local"]
    assert cluster["local"].get("Customer", "Acme Local")["territory"] == "Norway"
    assert cluster["local"].get("Sales Order", world["local_order"])["customer"] == "Acme Local"
    assert cluster["cloud"].names("Customer") == [world["customer"]]  # and nothing came back to cloud
    again = await full_sync(engine)
    assert again.writes == 0 and again.failed == 0


async def test_a_rename_seen_after_its_new_name_was_synced_as_a_new_document_still_converges(
    cluster: SimCluster, make_engine
) -> None:
    """No evidence at first (Comments unreadable, edited since): the new name is synced as a new document. When
    the old name is then found gone and the Comment names the new one, the map is not forced onto a name another
    record holds (that failed with a UNIQUE error, a dead item, in the crash harness), and the rename is no delete
    either: the engine's own fresh copy is dropped and the old pair takes the new name. One copy each.

    Matching is off here: with the built-in rules the business key and the vanished counterpart already tell the
    rename (next test)."""
    engine = make_engine(match=NO_CUSTOMER_MATCHING)
    cloud = cluster["cloud"]
    solo = cloud.insert("Customer", {"customer_name": "Solo", "customer_type": "Company"}, fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"])
    cloud.rename("Customer", solo["name"], "Solo Ltd")
    cloud.update("Customer", "Solo Ltd", {"territory": "Iceland"}, fire_webhooks=False)
    cloud.set_permissions(denied_doctypes=["Comment"])
    assert (await engine.sync_document("Customer", "cloud", "Solo Ltd")).outcome == Outcome.CREATED
    cloud.set_permissions(denied_doctypes=[])
    result = await engine.sync_document("Customer", "cloud", solo["name"])
    assert result.outcome == Outcome.UPDATED  # was DELETED: the old pair's copy on local deleted, a rename as a delete
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert cluster["local"].count("Customer") == cloud.count("Customer") == 1
    local_name = engine.state.translate_name("Customer", "cloud", "Solo Ltd", "local")
    assert cluster["local"].get("Customer", local_name)["territory"] == "Iceland"


async def test_a_renamed_document_seen_by_its_new_name_while_comments_are_unreadable_is_paired_by_its_key(
    cluster: SimCluster, make_engine
) -> None:
    """No Comment to read, edited since (its content no longer what was synced): its business key (customer_name)
    matches the one document on local whose counterpart on cloud is gone, so that pair takes the new name —
    no copy is made, and the old name's 404 later is no delete."""
    engine = make_engine()
    cloud, local = cluster["cloud"], cluster["local"]
    solo = cloud.insert("Customer", {"customer_name": "Solo", "customer_type": "Company"}, fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"])
    copy = engine.state.translate_name("Customer", "cloud", solo["name"], "local")
    cloud.rename("Customer", solo["name"], "Solo Ltd")
    cloud.update("Customer", "Solo Ltd", {"territory": "Iceland"}, fire_webhooks=False)
    cloud.set_permissions(denied_doctypes=["Comment"])
    result = await engine.sync_document("Customer", "cloud", "Solo Ltd")
    assert result.outcome == Outcome.UPDATED and local.names("Customer") == [copy], result
    assert local.get("Customer", copy)["territory"] == "Iceland"
    assert engine.state.translate_name("Customer", "cloud", "Solo Ltd", "local") == copy
    cloud.set_permissions(denied_doctypes=[])
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0 and summary.writes == 0, summary
    assert local.count("Customer") == cloud.count("Customer") == 1


async def test_a_renamed_document_is_not_deleted_while_the_comments_cannot_be_read(
    cluster: SimCluster, make_engine
) -> None:
    """The old name answers 404 while the site's Comments fail for a moment (an outage, a 429): that is no
    answer, not "no rename" — nothing is deleted on the other site; the rename is followed once they can be read.
    (The soak once ended with a renamed customer's pair diverged in such an outage.)"""
    from erpsync_tui.connectors.base import ConnectorError, ServerError

    engine = make_engine()
    world = await _synced(engine, cluster)
    cluster["cloud"].rename("Customer", world["customer"], "Acme Ltd")
    cloud = engine.connectors["cloud"]
    real_list = cloud.list_documents

    def comments_failing(doctype: str, **kwargs: Any) -> Any:
        if doctype != "Comment":
            return real_list(doctype, **kwargs)

        async def failing() -> Any:  # the site's Comment listing answers 502 while its documents still answer
            raise ServerError("GET /api/resource/Comment → HTTP 502: Bad Gateway", site="cloud", status=502)
            yield

        return failing()

    cloud.list_documents = comments_failing  # type: ignore[method-assign]
    try:
        await engine.sync_document("Customer", "cloud", world["customer"])  # e.g. a retried item of the old name
    except ConnectorError as exc:
        assert exc.retryable  # goes back to the queue: tried again later
    assert cluster["local"].names("Customer") == [world["local_customer"]]  # nothing deleted on local
    assert cluster["local"].all("Deleted Document") == []
    cloud.list_documents = real_list  # type: ignore[method-assign]
    summary = await incremental_sync(engine)
    assert summary.failed == 0, summary
    _assert_one_customer_under_local_name(cluster, engine, world)


@pytest.mark.parametrize("how", ["edit_webhook_of_newest_name", "incremental"])
async def test_a_customer_renamed_twice_before_the_engine_looked_stays_one_document(
    cluster: SimCluster, make_engine, how: str
) -> None:
    """X → Y → Z on cloud, then an edit of Z: the middle name Y was never tracked, so one step back from Z (or
    forward from X) found nothing — Z was created on local as a new customer (a duplicate beside X's copy, which
    kept the old content). The chain of rename Comments leads from Z back to X, and from X on to Z."""
    engine = make_engine()
    world = await _synced(engine, cluster)
    cloud = cluster["cloud"]
    cloud.rename("Customer", world["customer"], "Acme Middle")
    cloud.rename("Customer", "Acme Middle", "Acme Ltd")
    cloud.update("Customer", "Acme Ltd", {"territory": "Peru"}, fire_webhooks=False)
    if how == "edit_webhook_of_newest_name":
        result = await engine.sync_document("Customer", "cloud", "Acme Ltd")
        assert result.outcome == Outcome.UPDATED, result
    summary = await incremental_sync(engine)
    assert summary.failed == 0, summary
    _assert_one_customer_under_local_name(cluster, engine, world)
    assert cluster["local"].get("Customer", world["local_customer"])["territory"] == "Peru"
    again = await full_sync(engine)
    assert again.writes == 0 and again.failed == 0


async def test_a_renamed_and_edited_document_is_not_created_again_while_the_comments_cannot_be_read(
    cluster: SimCluster, make_engine
) -> None:
    """The new name's edit arrives while the site's Comments answer 502: its content matches nothing tracked any
    more, so only the Comment tells it is a rename. No answer is no "not a rename": the create waits (a retryable
    failure, to the queue) instead of copying the customer to local a second time."""
    from erpsync_tui.connectors.base import ConnectorError, ServerError

    engine = make_engine()
    world = await _synced(engine, cluster)
    cluster["cloud"].rename("Customer", world["customer"], "Acme Ltd")
    cluster["cloud"].update("Customer", "Acme Ltd", {"territory": "Chile"}, fire_webhooks=False)
    cloud = engine.connectors["cloud"]
    real_list = cloud.list_documents

    def comments_failing(doctype: str, **kwargs: Any) -> Any:
        if doctype != "Comment":
            return real_list(doctype, **kwargs)

        async def failing() -> Any:
            raise ServerError("GET /api/resource/Comment → HTTP 502: Bad Gateway", site="cloud", status=502)
            yield

        return failing()

    cloud.list_documents = comments_failing  # type: ignore[method-assign]
    with pytest.raises(ConnectorError) as raised:
        await engine.sync_document("Customer", "cloud", "Acme Ltd")  # the edit's webhook
    assert raised.value.retryable
    assert cluster["local"].names("Customer") == [world["local_customer"]]  # no copy made
    cloud.list_documents = real_list  # type: ignore[method-assign]
    assert (await engine.sync_document("Customer", "cloud", "Acme Ltd")).outcome == Outcome.UPDATED  # the retry
    _assert_one_customer_under_local_name(cluster, engine, world)
    assert cluster["local"].get("Customer", world["local_customer"])["territory"] == "Chile"


@pytest.mark.parametrize("noticed_by", ["old_name_retry", "rename_feed"])
async def test_a_rename_noticed_after_its_new_name_was_copied_never_deletes_the_linked_counterpart(
    cluster: SimCluster, make_engine, noticed_by: str
) -> None:
    """Renamed on cloud and edited; its new name synced first, as a new customer (Comments unreadable then: a copy
    on local). When the old name's 404 is then explained by the rename Comment, the old copy on local — the one
    local's orders link to — was deleted as if the customer were gone: refused (LinkExistsError), retried, dead.
    A rename never becomes a delete: the copy made a moment ago, unchanged since and linked by nothing, is the one
    dropped; the customer keeps its local name, its links and the edit. (Matching off: with it, the key and the
    vanished counterpart tell the rename before any copy is made.)"""
    engine = make_engine(match=NO_CUSTOMER_MATCHING)
    world = await _synced(engine, cluster)
    cloud, local = cluster["cloud"], cluster["local"]
    cloud.rename("Customer", world["customer"], "Acme Ltd")
    cloud.update("Customer", "Acme Ltd", {"territory": "Iceland"}, fire_webhooks=False)
    cloud.set_permissions(denied_doctypes=["Comment"])
    assert (await engine.sync_document("Customer", "cloud", "Acme Ltd")).outcome == Outcome.CREATED  # the copy
    assert local.count("Customer") == 2
    cloud.set_permissions(denied_doctypes=[])
    if noticed_by == "old_name_retry":
        result = await engine.sync_document("Customer", "cloud", world["customer"])
        assert result.outcome == Outcome.UPDATED, result
    else:  # the incremental sync's rename feed (it left a rename onto a tracked name alone before)
        assert (await incremental_sync(engine)).failed == 0
    assert local.names("Customer") == [world["local_customer"]]  # the copy is gone, the linked one kept
    assert local.get("Customer", world["local_customer"])["territory"] == "Iceland"
    assert local.get("Sales Order", world["local_order"])["customer"] == world["local_customer"]
    assert engine.state.translate_name("Customer", "cloud", "Acme Ltd", "local") == world["local_customer"]
    assert engine.state.find("cloud", "Customer", world["customer"]) is None
    summary = await full_sync(engine)
    assert summary.failed == 0 and summary.writes == 0, summary
    assert cloud.count("Customer") == local.count("Customer") == 1


@pytest.mark.parametrize("noticed_by", ["deleted_name", "link_then_retry", "link_then_rename_feed"])
async def test_an_edit_whose_push_failed_still_arrives_after_the_document_is_renamed(
    cluster: SimCluster, make_engine, worker_for, db, noticed_by: str
) -> None:
    """Edited on cloud, the push refused (local's key revoked), then renamed before the retry. The rename is
    noticed by the queued retry of the old name (its 404), or by a sync that fails too: a new order linking the new
    name (the link path moves the name map, then its write is refused). After that the old name's retry finds
    nothing tracked, and the listing watermark has moved past the edit: the edit must still reach local — by the
    old name's retry following the rename, or by the rename feed syncing the followed name once more (fault soak,
    CI run of session 20: customer_details v332 never arrived)."""
    from erpsync_tui.store import queue

    engine = make_engine()  # retries: 3 attempts
    world = await _synced(engine, cluster)
    cloud, local = cluster["cloud"], cluster["local"]
    cloud.update("Customer", world["customer"], {"territory": "Chile"}, fire_webhooks=False)
    local.set_faults(revoked=True)
    assert (await incremental_sync(engine)).failed >= 1  # the edit listed, its push refused: queued
    cloud.insert("Customer", {"customer_name": "Later", "customer_type": "Company"}, fire_webhooks=False)
    await incremental_sync(engine)  # a later save moves the watermark on: the edit is never listed again
    cloud.rename("Customer", world["customer"], "Acme Ltd")
    worker = worker_for(engine)
    if noticed_by != "deleted_name":
        order = cloud.insert("Sales Order", {"customer": "Acme Ltd", "transaction_date": "2026-02-03",
                                             "delivery_date": "2026-02-10",
                                             "items": [{"item_code": "WIDGET", "qty": 2, "rate": 3}]},
                             fire_webhooks=False)
        with db.write() as s:
            queue.enqueue(s, site="cloud", doctype="Sales Order", name=order["name"], max_attempts=9)
    for _ in range(4):  # every attempt refused while the key is revoked
        await asyncio.sleep(0.06)
        await worker.drain()
    if noticed_by == "link_then_rename_feed":  # no retry of the old name left (an operator discarded it)
        _discard_failed(db, world["customer"])
    local.clear_faults()
    for _ in range(6):
        await asyncio.sleep(0.06)
        await worker.drain()
    if noticed_by != "link_then_retry":
        await incremental_sync(engine)  # no full sync: that would find it by walking everything, hours later
    assert local.get("Customer", world["local_customer"])["territory"] == "Chile"
    assert len(local.names("Customer")) == 2  # Acme and Later, once each
    assert engine.state.translate_name("Customer", "cloud", "Acme Ltd", "local") == world["local_customer"]


@pytest.mark.parametrize("copy_is", ["edited_since", "a_matched_pair"])
async def test_a_rename_onto_a_name_whose_copy_is_someone_s_work_deletes_nothing_and_says_so(
    cluster: SimCluster, make_engine, db, copy_is: str
) -> None:
    """Renamed on cloud; the new name got its own counterpart on local before the rename was seen — a copy the
    engine made and local edited since, or a document local already held, paired by the matching rules. Neither
    may be deleted (someone's work), and the old counterpart — the one local's orders link to — may not be
    deleted either (the rename was taken for a delete: LinkExistsError, dead). The new name pairs with the old
    counterpart; the other document is kept, set apart for the operator (ERP009: not synced, not re-created)."""
    from erpsync_tui.store.models import RecordStatus, SyncLog

    engine = make_engine(match={"Customer": ["customer_name"]} if copy_is == "a_matched_pair" else NO_CUSTOMER_MATCHING)
    world = await _synced(engine, cluster)
    cloud, local = cluster["cloud"], cluster["local"]
    cloud.rename("Customer", world["customer"], "Acme Ltd")
    cloud.update("Customer", "Acme Ltd", {"territory": "Iceland"}, fire_webhooks=False)
    cloud.set_permissions(denied_doctypes=["Comment"])
    if copy_is == "edited_since":
        assert (await engine.sync_document("Customer", "cloud", "Acme Ltd")).outcome == Outcome.CREATED
        other = engine.state.translate_name("Customer", "cloud", "Acme Ltd", "local")
        local.update("Customer", other, {"customer_group": "Individual"}, fire_webhooks=False)
    else:  # local already held a customer by that name, made by a person there
        other = local.insert("Customer", {"customer_name": "Acme", "customer_type": "Company"},
                             fire_webhooks=False)["name"]
        result = await engine.sync_document("Customer", "cloud", "Acme Ltd")
        assert engine.state.translate_name("Customer", "cloud", "Acme Ltd", "local") == other, result
    cloud.set_permissions(denied_doctypes=[])
    await engine.sync_document("Customer", "cloud", world["customer"])  # its 404, explained by the Comment
    await incremental_sync(engine)
    assert sorted(local.names("Customer")) == sorted([world["local_customer"], other])  # nothing deleted
    assert local.get("Sales Order", world["local_order"])["customer"] == world["local_customer"]
    # the same content as cloud's (the edit, or what the first-contact policy made of the matched pair)
    assert local.get("Customer", world["local_customer"])["territory"] == cloud.get("Customer", "Acme Ltd")["territory"]
    assert engine.state.translate_name("Customer", "cloud", "Acme Ltd", "local") == world["local_customer"]
    set_apart = engine.state.find("local", "Customer", other)
    assert set_apart is not None and set_apart.status == RecordStatus.SET_APART and list(set_apart.sides) == ["local"]
    with db.read() as s:
        said = s.exec(select(SyncLog).where(SyncLog.error_code == "ERP009", SyncLog.name == other)).all()
    assert said and "kept" in said[-1].message
    summary = await full_sync(engine)
    assert summary.failed == 0, summary
    assert cloud.count("Customer") == 1  # the set-apart document is not created back on cloud
    local.delete("Customer", other, fire_webhooks=False)  # the operator took what they needed, then deleted it
    summary = await full_sync(engine)
    assert summary.failed == 0 and summary.writes == 0, summary
    assert engine.state.find("local", "Customer", other) is None
    assert cloud.count("Customer") == local.count("Customer") == 1


@pytest.mark.parametrize("noticed_by", ["old_name_retry", "rename_feed"])
async def test_a_new_document_renamed_before_its_first_sync_succeeded_is_still_created(
    cluster: SimCluster, make_engine, worker_for, db, noticed_by: str
) -> None:
    """Made on cloud, its first sync refused (local's key revoked), renamed before the retry. The old name is
    untracked and gone; the listing watermark has moved past the document (a rename keeps `modified`). The old
    name's retry, or the rename feed, must follow the rename to the new name and create it on local (fault soak:
    CUST-R00053-cloud never reached local)."""

    engine = make_engine()
    await _synced(engine, cluster)
    cloud, local = cluster["cloud"], cluster["local"]
    local.set_faults(revoked=True)
    fresh = cloud.insert("Customer", {"customer_name": "Fresh", "customer_type": "Company"}, fire_webhooks=False)
    assert (await incremental_sync(engine)).failed >= 1  # listed, its create refused: queued
    cloud.insert("Customer", {"customer_name": "Later", "customer_type": "Company"}, fire_webhooks=False)
    await incremental_sync(engine)  # a later save moves the watermark on
    cloud.rename("Customer", fresh["name"], "Fresh Ltd")
    if noticed_by == "rename_feed":  # no retry of the old name left (an operator discarded it)
        _discard_failed(db, fresh["name"])
    local.clear_faults()
    worker = worker_for(engine)
    for _ in range(6):
        await asyncio.sleep(0.06)
        await worker.drain()
    if noticed_by == "rename_feed":
        await incremental_sync(engine)
    copy = engine.state.translate_name("Customer", "cloud", "Fresh Ltd", "local")
    assert copy is not None and local.get("Customer", copy) is not None
    assert local.count("Customer") == cloud.count("Customer") == 3  # Acme, Fresh Ltd, Later: once each


async def test_a_document_renamed_then_deleted_before_the_engine_looked_is_deleted_on_the_other_site(
    cluster: SimCluster, make_engine
) -> None:
    """Renamed on cloud, then deleted under its new name, neither with a webhook. The rename feed finds the new name
    gone, and the Deleted Document row names a name never tracked: the delete must still reach local (fault soak
    seed 207: a customer renamed and deleted on local stayed on cloud)."""
    engine = make_engine()
    cloud, local = cluster["cloud"], cluster["local"]
    solo = cloud.insert("Customer", {"customer_name": "Solo", "customer_type": "Company"}, fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"])
    await incremental_sync(engine, doctypes=["Customer"])  # watermarks in place
    copy = engine.state.translate_name("Customer", "cloud", solo["name"], "local")
    cloud.rename("Customer", solo["name"], "Solo Ltd")
    cloud.delete("Customer", "Solo Ltd", fire_webhooks=False)
    summary = await incremental_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert local.get("Customer", copy) is None and local.count("Customer") == cloud.count("Customer") == 0

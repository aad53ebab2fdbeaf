"""The bulk full-sync path (list pages of whole documents, insert_many batches) against two simulator sites
over loopback HTTP and a real SQLite state file: what it sends, what it records, and how it falls back."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import select

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine import bulk
from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.sim import SimCluster
from erpsync_tui.store.models import CreateAttempt, QueueItem, RecordStatus, SyncLog, SyncRecord, Watermark

from .test_sync import business, counterpart, customer, writes_logged

INSERT_MANY = "POST /api/method/frappe.client.insert_many"
POST_ONE = "POST /api/resource/{doctype}"
GET_ONE = "GET /api/resource/{doctype}/{name}"


def count(cluster: SimCluster, site: str, key: str) -> int:
    """Requests counted by the site under `key` ("METHOD route", optionally with the status)."""
    return sum(n for k, n in cluster[site].counters.items() if k == key or k.startswith(key + " "))


def logs(db, outcome: str) -> list[SyncLog]:
    with db.read() as s:
        return list(s.exec(select(SyncLog).where(SyncLog.outcome == outcome)).all())


async def test_creates_go_in_insert_many_batches_with_a_log_line_each(cluster: SimCluster, make_engine, db) -> None:
    for i in range(130):
        cluster["cloud"].insert("Customer", customer(f"Bulk {i}", territory=f"T{i % 7}"), fire_webhooks=False)
    engine = make_engine(batch_size=50)
    cluster["cloud"].reset_counters()
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert summary.failed == 0 and summary.outcomes == {"created": 130}
    assert cluster["local"].count("Customer") == 130
    assert count(cluster, "local", INSERT_MANY) == 3  # one call per batch of 50 (≤ 200 each)
    assert count(cluster, "local", POST_ONE) == 0
    # No per-document reads: the DocType meta, and the one check that list rows are whole documents.
    assert count(cluster, "cloud", GET_ONE) <= 2
    for name in cluster["cloud"].names("Customer"):
        assert business(cluster["cloud"].get("Customer", name)) == business(
            cluster["local"].get("Customer", counterpart(engine, "Customer", "cloud", name)))
    created = logs(db, "created")
    assert len(created) == 130 and {row.direction for row in created} == {"cloud→local"}
    assert {row.name for row in created} == set(cluster["cloud"].names("Customer"))
    with db.read() as s:
        assert {r.status for r in s.exec(select(SyncRecord)).all()} == {RecordStatus.SYNCED}
    # A second pass (both directions) reads and compares, and writes nothing anywhere.
    before, local_writes = writes_logged(db), count(cluster, "local", INSERT_MANY)
    second = await full_sync(engine, doctypes=["Customer"])
    assert second.writes == 0 and second.failed == 0 and second.processed == 260
    assert writes_logged(db) == before and count(cluster, "local", INSERT_MANY) == local_writes


async def test_updates_from_the_source_are_pushed_and_target_edits_take_the_per_document_path(
    cluster: SimCluster, make_engine, db
) -> None:
    names = [cluster["cloud"].insert("Customer", customer(f"Upd {i}"), fire_webhooks=False)["name"]
             for i in range(6)]
    engine = make_engine()
    await full_sync(engine, doctypes=["Customer"])
    cluster["cloud"].update("Customer", names[0], {"territory": "Japan"}, fire_webhooks=False)
    local_1 = counterpart(engine, "Customer", "cloud", names[1])
    cluster["local"].update("Customer", local_1, {"mobile_no": "+30 1"}, fire_webhooks=False)
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0 and summary.outcomes["updated"] == 2
    assert cluster["local"].get("Customer", counterpart(engine, "Customer", "cloud", names[0]))["territory"] == "Japan"
    assert cluster["cloud"].get("Customer", names[1])["mobile_no"] == "+30 1"
    assert {row.direction for row in logs(db, "updated")} == {"cloud→local", "local→cloud"}


async def test_a_refused_batch_rolls_back_and_falls_back_to_one_by_one(cluster: SimCluster, make_engine) -> None:
    """Items are named by item_code: one code already on the target makes insert_many refuse the whole call."""
    for code in ("SKU-A", "SKU-B", "SKU-C", "SKU-D"):
        cluster["cloud"].insert("Item", {"item_code": code, "item_group": "Products", "stock_uom": "Nos"},
                                fire_webhooks=False)
    cluster["local"].insert("Item", {"item_code": "SKU-C", "item_group": "Services", "stock_uom": "Nos"},
                            fire_webhooks=False)
    engine = make_engine(conflict_resolution="cloud_wins", match={"Item": []})  # matching off: the insert goes
    summary = await full_sync(engine, doctypes=["Item"], direction="cloud_to_local")
    assert summary.failed == 0, summary
    assert count(cluster, "local", INSERT_MANY + " 200") == 0 and count(cluster, "local", INSERT_MANY) == 1
    assert count(cluster, "local", POST_ONE + " 200") == 3  # A, B, D one by one; C adopted, not duplicated
    assert sorted(cluster["local"].names("Item")) == ["SKU-A", "SKU-B", "SKU-C", "SKU-D"]
    assert cluster["local"].get("Item", "SKU-C")["item_group"] == "Products"
    assert engine.state.translate_name("Item", "cloud", "SKU-C", "local") == "SKU-C"


async def test_lost_insert_many_answer_then_rerun_makes_no_duplicates(
    cluster: SimCluster, make_engine, db, worker_for
) -> None:
    for i in range(12):
        cluster["cloud"].insert("Customer", customer(f"Lost {i}", territory=f"Zone {i}"), fire_webhooks=False)
    engine = make_engine()
    cluster["local"].set_faults(drop_response="insert_many")  # the site commits, the answer never arrives
    first = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert first.failed == 12  # unknown outcome: each document goes to the queue, its intent kept
    assert cluster["local"].count("Customer") == 12  # the inserts did happen
    with db.read() as s:
        assert {r.status for r in s.exec(select(SyncRecord)).all()} == {RecordStatus.CREATING}
        assert len(s.exec(select(QueueItem)).all()) == 12
        assert len(s.exec(select(CreateAttempt)).all()) == 12  # recorded before the call: recognisable later
    cluster["local"].clear_faults()
    rerun = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert rerun.failed == 0 and rerun.outcomes == {"adopted": 12}
    assert cluster["local"].count("Customer") == 12  # found by content, not created again
    assert count(cluster, "local", POST_ONE) == 0
    for name in cluster["cloud"].names("Customer"):
        local = counterpart(engine, "Customer", "cloud", name)
        assert business(cluster["cloud"].get("Customer", name)) == business(cluster["local"].get("Customer", local))
    await worker_for(engine).drain()  # the queued retries find nothing left to do
    assert cluster["local"].count("Customer") == 12
    with db.read() as s:
        assert s.exec(select(CreateAttempt)).all() == []  # forgotten once paired


async def test_links_are_translated_into_the_target_names_in_the_bulk_path(cluster: SimCluster, make_engine) -> None:
    """Series names collide (CUST-00001 is another customer on each site): a link must be translated."""
    cluster["local"].seed(3)  # local's CUST-00001..3 are unrelated customers
    engine = make_engine(overrides={"Customer": {"links": {"customer_details": "Customer"}}})
    parent = cluster["cloud"].insert("Customer", customer("Parent Co"), fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", parent["name"])
    parent_local = counterpart(engine, "Customer", "cloud", parent["name"])
    assert parent_local != parent["name"]
    child = cluster["cloud"].insert("Customer", customer("Child Co", customer_details=parent["name"]),
                                    fire_webhooks=False)
    posts_before = count(cluster, "local", POST_ONE)
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert summary.failed == 0 and summary.outcomes["created"] == 1
    assert count(cluster, "local", INSERT_MANY + " 200") == 1 and count(cluster, "local", POST_ONE) == posts_before
    child_local = cluster["local"].get("Customer", counterpart(engine, "Customer", "cloud", child["name"]))
    assert child_local["customer_details"] == parent_local
    # And back: local's own documents arrive on cloud with links in cloud's names, in a batch as well.
    grandchild = cluster["local"].insert("Customer", customer("Grandchild", customer_details=child_local["name"]),
                                         fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"], direction="local_to_cloud")
    on_cloud = cluster["cloud"].get("Customer", counterpart(engine, "Customer", "local", grandchild["name"]))
    assert on_cloud["customer_details"] == child["name"]
    assert count(cluster, "cloud", POST_ONE) == 0


async def test_a_custom_table_field_keeps_the_doctype_per_document(cluster: SimCluster, make_engine) -> None:
    cluster["local"].insert("Custom Field", {"dt": "Customer", "fieldname": "contacts", "fieldtype": "Table"},
                            fire_webhooks=False)
    for i in range(3):
        cluster["cloud"].insert("Customer", customer(f"Careful {i}"), fire_webhooks=False)
    engine = make_engine()
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert summary.failed == 0 and cluster["local"].count("Customer") == 3
    assert count(cluster, "local", INSERT_MANY) == 0 and count(cluster, "local", POST_ONE) == 3


def _full_mark(db) -> tuple[str | None, list[str]] | None:
    with db.read() as s:
        row = s.exec(select(Watermark).where(Watermark.kind == "full", Watermark.doctype == "Customer")).first()
    return (row.value, list(row.names_at_value)) if row else None


async def test_batches_in_flight_save_their_checkpoints_in_order(
    cluster: SimCluster, make_engine, db, monkeypatch
) -> None:
    """The first batch finishes last (slow), yet no checkpoint is saved before it: positions go in listing order."""
    cluster["cloud"].seed(40)
    engine = make_engine(batch_size=10)
    marks: list[str | None] = []
    real_set, real_batch = engine.state.set_watermark, bulk._bulk_batch
    calls = 0

    def set_watermark(site, doctype, value, names, kind):
        marks.append(value)
        real_set(site, doctype, value, names, kind)

    async def slow_first(engine_, doctype, site, rows, summary, **kw):
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)
        await real_batch(engine_, doctype, site, rows, summary, **kw)

    monkeypatch.setattr(engine.state, "set_watermark", set_watermark)
    monkeypatch.setattr(bulk, "_bulk_batch", slow_first)
    listed = [(row["modified"], row["name"]) async for row in engine.connectors["cloud"].list_documents(
        "Customer", fields=("name", "modified"))]
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert summary.failed == 0 and summary.processed == len(listed) == cluster["local"].count("Customer")
    batches = [listed[i:i + 10] for i in range(0, len(listed), 10)]
    assert marks == [batch[-1][0] for batch in batches] + [None]  # one per batch, in order, then "finished"


async def test_a_failing_batch_leaves_the_checkpoint_before_it(
    cluster: SimCluster, make_engine, db, monkeypatch
) -> None:
    cluster["cloud"].seed(50)
    engine = make_engine(batch_size=10)
    real_batch = bulk._bulk_batch
    calls = 0

    async def third_fails(engine_, doctype, site, rows, summary, **kw):
        nonlocal calls
        calls += 1
        if calls == 3:
            await asyncio.sleep(0.05)  # the fourth batch is in flight meanwhile
            raise RuntimeError("boom")
        await real_batch(engine_, doctype, site, rows, summary, **kw)

    monkeypatch.setattr(bulk, "_bulk_batch", third_fails)
    listed = [row async for row in engine.connectors["cloud"].list_documents("Customer")]
    with pytest.raises(RuntimeError, match="boom"):
        await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    second = listed[19]
    assert _full_mark(db) == (second["modified"], [r["name"] for r in listed[:20]
                                                   if r["modified"] == second["modified"]])
    monkeypatch.setattr(bulk, "_bulk_batch", real_batch)
    resumed = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert resumed.failed == 0 and cluster["local"].count("Customer") == 50  # the rest, none twice
    assert _full_mark(db) == (None, [])


async def test_a_listing_failure_after_batches_keeps_their_checkpoint(
    cluster: SimCluster, make_engine, db, monkeypatch
) -> None:
    cluster["cloud"].seed(30)
    engine = make_engine(batch_size=10, match={"Customer": []})  # no matching pass: the walk's listing breaks
    connector = engine.connectors["cloud"]
    real_list = connector.list_documents

    async def breaks_after_25(*args, **kwargs):
        n = 0
        async for row in real_list(*args, **kwargs):
            n += 1
            if n > 25 and kwargs.get("fields") == ("*",):
                raise ConnectorError("listing broke", site="cloud")
            yield row

    monkeypatch.setattr(connector, "list_documents", breaks_after_25)
    listed = [row async for row in real_list("Customer")]
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert summary.failed == 1 and summary.processed == 20
    assert cluster["local"].count("Customer") == 20  # the rows of the broken batch wait for the next run
    assert _full_mark(db)[0] == listed[19]["modified"]
    assert len(logs(db, "failed")) == 1

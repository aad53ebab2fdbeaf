"""The receiver's batched enqueue must leave exactly the rows `queue.enqueue` one by one would, event for event."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from erpsync_tui.store import Database, open_database
from erpsync_tui.store import queue as store_queue
from erpsync_tui.store.models import QueueItem, QueueKind, QueueStatus, utcnow
from erpsync_tui.store.queue import Stored as StoredEvent
from erpsync_tui.webhooks.parsing import WebhookEvent
from erpsync_tui.webhooks.writer import WebhookWrite, enqueue_webhooks

COMPARED = ("id", "kind", "site", "doctype", "name", "payload", "status", "attempts", "max_attempts", "dedupe_key",
            "coalesced", "next_attempt_at", "created_at", "updated_at")


def _writes() -> list[WebhookWrite]:
    start = utcnow()
    plan = [("cloud", "Customer", "A"), ("cloud", "Customer", "B"), ("cloud", "Customer", "A"),
            ("local", "Customer", "A"), ("cloud", "Item", "A"), ("cloud", "Customer", "PENDING"),
            ("cloud", "Customer", "DONE"), ("cloud", "Customer", "A"), ("cloud", "Customer", "RUNNING")]
    return [WebhookWrite(site, WebhookEvent(doctype, name, f"ev{i}", f"2024-05-01 10:00:0{i}"),
                         start + timedelta(milliseconds=i))
            for i, (site, doctype, name) in enumerate(plan)]


def _seed(db: Database, then: datetime) -> None:
    """Existing items: a pending one (absorbs events), a done and an in-progress one (must not)."""
    with db.write() as session:
        for name, status in (("PENDING", QueueStatus.PENDING), ("DONE", QueueStatus.DONE),
                             ("RUNNING", QueueStatus.IN_PROGRESS)):
            item = store_queue.enqueue(session, kind=QueueKind.WEBHOOK, site="cloud", doctype="Customer", name=name,
                                       payload={"event": "old", "extra": "kept"}, now=then)
            item.status = status
            session.add(item)


def _rows(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        items = session.exec(select(QueueItem).order_by(col(QueueItem.id))).all()
        return [{field: getattr(item, field) for field in COMPARED} for item in items]


def test_batched_enqueue_equals_enqueue_one_by_one(tmp_path: Path) -> None:
    reference, batched = (open_database(f"sqlite:///{tmp_path / name}.db") for name in ("reference", "batched"))
    then = utcnow() - timedelta(minutes=5)
    for db in (reference, batched):
        _seed(db, then)
    writes = _writes()

    expected: list[StoredEvent] = []
    with reference.write() as session:
        for write in writes:
            before = {i.id for i in session.exec(select(QueueItem)).all()}
            item = store_queue.enqueue(session, kind=QueueKind.WEBHOOK, site=write.site, doctype=write.event.doctype,
                                       name=write.event.name, payload=write.payload(), max_attempts=7,
                                       now=write.received_at)
            assert item.id is not None
            expected.append(StoredEvent(item.id, item.id in before))
    with batched.writer_engine.begin() as connection:
        got = enqueue_webhooks(connection, writes, max_attempts=7)

    assert got == expected
    assert _rows(batched) == _rows(reference)
    pending = {row["dedupe_key"]: row for row in _rows(batched) if row["status"] == "pending"}
    assert pending["webhook|cloud|Customer|A"]["coalesced"] == 2
    assert pending["webhook|cloud|Customer|A"]["payload"]["event"] == "ev7"
    assert pending["webhook|cloud|Customer|PENDING"]["payload"]["extra"] == "kept"  # merged, the newest event wins
    assert pending["webhook|cloud|Customer|PENDING"]["payload"]["event"] == "ev5"
    assert [got[i].coalesced for i in (6, 8)] == [False, False]  # done / in-progress items do not absorb
    for db in (reference, batched):
        db.dispose()


def test_empty_batch_is_a_no_op(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    with db.writer_engine.begin() as connection:
        assert enqueue_webhooks(connection, [], max_attempts=5) == []
    db.dispose()


def test_without_coalescing_every_event_is_a_row_of_its_own(tmp_path: Path) -> None:
    """coalesce=False (operator resolutions): no pending twin absorbs the event, one by one or batched."""
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    now = utcnow()
    with db.write() as session:
        first = store_queue.enqueue(session, kind=QueueKind.RESOLVE, payload={"n": 1}, coalesce=False, now=now)
        second = store_queue.enqueue(session, kind=QueueKind.RESOLVE, payload={"n": 2}, coalesce=False, now=now)
    work = [store_queue.NewWork(QueueKind.RESOLVE.value, None, None, None, {"n": n}, now) for n in (3, 4)]
    with db.writer_engine.begin() as connection:
        stored = store_queue.enqueue_many(connection, work, max_attempts=5, coalesce=False)
    rows = _rows(db)
    assert first.id != second.id and [s.coalesced for s in stored] == [False, False]
    assert [row["payload"] for row in rows] == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert {row["coalesced"] for row in rows} == {0} and {row["kind"] for row in rows} == {"resolve"}
    db.dispose()

"""The per-status counts `status` reads (store/counts.py) equal a real COUNT after every kind of change, a
rollback, a crash mid-write and an upgrade of a database made before them — on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, update
from sqlmodel import select

from erpsync_tui.store import Database, counts, open_database, queries, queue
from erpsync_tui.store.models import Meta, QueueStatus, RecordStatus, StatusCount, SyncRecord, utcnow

pytestmark = pytest.mark.backends


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.dispose()


def assert_counts_exact(db: Database) -> dict[str, dict[str, int]]:
    with db.read() as s:
        seen = {}
        for table in counts.COUNTED:
            cached = counts.cached_counts(s, table)
            assert cached is not None, "counts not installed"
            assert cached == counts.exact_counts(s, table), table
            seen[table] = cached
    return seen


def enqueue(db: Database, *names: str, max_attempts: int = 5) -> list[int]:
    with db.write() as s:
        return [int(queue.enqueue(s, site="cloud", doctype="Customer", name=n, max_attempts=max_attempts).id or 0)
                for n in names]


def fail(db: Database, item_id: int) -> None:
    queue.fail(db, item_id, "w1", error="boom", error_code="ERP002", backoff_base=0.0, backoff_max=0.0)


def test_counts_follow_the_queue_through_every_transition(db: Database) -> None:
    a, b, c, d, e = enqueue(db, "A", "B", "C", "D", "E")
    enqueue(db, "A")  # coalesces into A: no new row
    assert assert_counts_exact(db)["queue_item"] == {"pending": 5}
    claimed = queue.claim(db, "w1", limit=3, now=utcnow() + timedelta(seconds=1))
    assert sorted(i.id for i in claimed) == [a, b, c]
    assert assert_counts_exact(db)["queue_item"] == {"pending": 2, "in_progress": 3}
    assert queue.complete(db, a, "w1")
    fail(db, b)
    assert_counts_exact(db)
    with db.write() as s:  # one attempt left for c: its failure dead-letters it
        s.execute(update(queue.QueueItem).where(queue.QueueItem.id == c).values(max_attempts=1))
    fail(db, c)
    assert assert_counts_exact(db)["queue_item"] == {"pending": 2, "done": 1, "failed": 1, "dead": 1}
    assert queue.discard(db, [d, c]) == 2
    assert queue.retry(db, [b]) == 1
    assert assert_counts_exact(db)["queue_item"] == {"pending": 2, "done": 1, "discarded": 2}
    queue.claim(db, "w2", limit=5, now=utcnow() + timedelta(seconds=1))
    assert queue.release(db, "w2") == 2
    queue.claim(db, "w3", limit=1, now=utcnow() + timedelta(seconds=1))
    assert queue.requeue_expired(db, now=utcnow() + timedelta(hours=1)) == 1
    assert assert_counts_exact(db)["queue_item"] == {"pending": 2, "done": 1, "discarded": 2}
    with db.write() as s:  # retention deletes finished items
        s.execute(delete(queue.QueueItem).where(queue.QueueItem.id.in_([a, d])))  # type: ignore[union-attr]
    assert assert_counts_exact(db)["queue_item"] == {"pending": 2, "discarded": 1}
    assert e


def test_counts_follow_records_and_feed_record_counts(db: Database) -> None:
    with db.write() as s:
        records = [SyncRecord(doctype="Customer", status=status) for status in
                   (RecordStatus.SYNCED, RecordStatus.SYNCED, RecordStatus.CREATING, RecordStatus.AMBIGUOUS)]
        s.add_all(records)
        s.flush()
        ids = [r.id for r in records]
    with db.write() as s:
        s.execute(update(SyncRecord).where(SyncRecord.id == ids[2]).values(status=RecordStatus.SYNCED))
        s.execute(update(SyncRecord).where(SyncRecord.id == ids[0]).values(status=RecordStatus.SYNCED))  # same
        s.execute(update(SyncRecord).where(SyncRecord.id == ids[1]).values(base_hash="x"))  # not the status
        s.execute(delete(SyncRecord).where(SyncRecord.id == ids[3]))
    assert assert_counts_exact(db)["sync_record"] == {"synced": 3}
    with db.read() as s:
        assert queries.record_counts(s) == {"synced": 3, "tracked": 3}


def test_a_rolled_back_write_leaves_the_counts_as_they_were(db: Database) -> None:
    enqueue(db, "A")
    with pytest.raises(RuntimeError), db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Customer", name="B")
        s.add(SyncRecord(doctype="Customer"))
        s.flush()
        raise RuntimeError("the write fails after its rows were flushed")
    assert assert_counts_exact(db) == {"sync_record": {}, "queue_item": {"pending": 1}}


def test_a_crash_mid_write_and_a_restart_leave_the_counts_right(db: Database) -> None:
    enqueue(db, "A", "B")
    queue.claim(db, "w1", limit=1, now=utcnow() + timedelta(seconds=1))
    # Another process flushes a claim, new items and records, then dies without committing.
    script = textwrap.dedent(f"""
        import os
        from erpsync_tui.store import open_database, queue
        from erpsync_tui.store.models import SyncRecord
        db = open_database({db.url!r})
        with db.write() as s:
            queue.enqueue(s, site="cloud", doctype="Customer", name="C")
            s.add(SyncRecord(doctype="Customer"))
            s.execute(queue.update(queue.QueueItem).values(status="done"))
            s.flush()
            os._exit(9)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr
    db.dispose()
    reopened = open_database(db.url)  # the restart
    try:
        assert assert_counts_exact(reopened) == {"sync_record": {}, "queue_item": {"pending": 1, "in_progress": 1}}
        queue.release(reopened, "w1")
        assert assert_counts_exact(reopened)["queue_item"] == {"pending": 2}
    finally:
        reopened.dispose()


def test_a_database_made_before_the_counts_gets_them_seeded_on_open(db: Database) -> None:
    enqueue(db, "A", "B")
    with db.write() as s:  # as a database of the previous version: no counts, no triggers, no meta key
        s.add(SyncRecord(doctype="Customer", status=RecordStatus.ERROR))
        connection = s.connection()
        for table in counts.COUNTED:
            for trigger in ("count_ins", "count_del", "count_upd", "count_insdel"):
                on = f" ON {table}" if not db.is_sqlite else ""
                connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_{trigger}{on}")
        s.execute(delete(StatusCount))
        s.execute(delete(Meta).where(Meta.key == counts.META_KEY))
    enqueue(db, "C")  # written with no trigger
    with db.read() as s:  # not installed: the exact COUNT answers
        assert counts.cached_counts(s, "queue_item") is None
        assert queries.queue_depth(s).by_status["pending"] == 3
    open_database(db.url).dispose()
    assert assert_counts_exact(db) == {"sync_record": {"error": 1}, "queue_item": {"pending": 3}}
    enqueue(db, "D")
    assert assert_counts_exact(db)["queue_item"] == {"pending": 4}


def test_status_queries_read_the_kept_counts_not_the_rows(db: Database) -> None:
    enqueue(db, "A")
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement.lower())

    event.listen(db.reader_engine, "before_cursor_execute", seen)
    try:
        with db.read() as s:
            queries.record_counts(s)
            depth = queries.queue_depth(s)
    finally:
        event.remove(db.reader_engine, "before_cursor_execute", seen)
    assert depth.by_status[QueueStatus.PENDING] == 1
    assert not [q for q in statements if "count(" in q], statements
    with db.read() as s:
        assert s.exec(select(StatusCount)).all()


def test_the_integrity_check_repairs_counts_written_around_the_triggers(db: Database) -> None:
    """Rows written with the triggers off (a data-only restore): the health job's integrity check recounts."""
    from erpsync_tui.engine.health import check_database_integrity

    enqueue(db, "A", "B")
    assert check_database_integrity(db).status == "ok"
    with db.write() as s:  # as if loaded with triggers disabled
        s.execute(update(StatusCount).where(StatusCount.source == "queue_item").values(n=StatusCount.n + 5))
    result = check_database_integrity(db)
    assert (result.status, result.value) == ("warn", "counts repaired"), result.detail
    assert "queue_item: kept {'pending': 7}, rows {'pending': 2}" in result.detail
    assert assert_counts_exact(db)["queue_item"] == {"pending": 2}
    assert check_database_integrity(db).status == "ok"

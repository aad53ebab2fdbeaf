"""The state store on a real SQLite file and a real PostgreSQL database: round-trips, queue semantics, backup,
bad files (tests of a SQLite file's own properties are `sqlite_only`)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from erpsync_tui.store import Database, StoreError, open_database, queue
from erpsync_tui.store.control import engine_status
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import (
    Conflict,
    Meta,
    OperatorAction,
    QueueItem,
    QueueStatus,
    SyncLog,
    SyncName,
    SyncRecord,
    utcnow,
)
from erpsync_tui.store.queries import log_tail, open_conflicts, queue_depth
from erpsync_tui.store.sqlite import backup, journal_mode

pytestmark = pytest.mark.backends


@pytest.fixture
def db(db_url: str) -> Database:
    database = open_database(db_url)
    yield database
    database.dispose()


def test_schema_version_is_stamped_once(db: Database) -> None:
    assert db.schema_version() == 1
    open_database(db.url).dispose()  # opening an existing database again neither fails nor stamps twice
    with db.read() as s:
        assert len(s.exec(select(Meta).where(Meta.key == "schema_version")).all()) == 1


def test_try_write_now_on_a_server_database_hands_the_write_to_a_thread(db: Database) -> None:
    """On PostgreSQL every commit is a network round trip: never on the receiver's event loop (None = use a
    thread); on SQLite a free lock gives a connection."""
    with db.try_write_now() as connection:
        assert (connection is None) == (not db.is_sqlite)


@pytest.mark.sqlite_only
def test_wal_and_schema_version(db: Database) -> None:
    assert journal_mode(db.writer_engine) == "wal"
    assert db.schema_version() == 1
    with sqlite3.connect(db.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_round_trip_of_every_table(db: Database) -> None:
    with db.write() as s:
        record = SyncRecord(doctype="Customer", base={"customer_name": "Ação [red]x"}, base_hash="h1")
        s.add(record)
        s.flush()
        s.add(SyncName(record_id=record.id, site="cloud", doctype="Customer", name="CUST-00001", content_hash="h1"))
        s.add(SyncName(record_id=record.id, site="local", doctype="Customer", name="CUST-00007", content_hash="h1"))
        s.add(Conflict(doctype="Customer", record_id=record.id, names={"cloud": "CUST-00001"}, fields=["a"]))
        s.add(OperatorAction(actor="ops", host="box", action="retry", params={"ids": [1]}))
        add_log(s, "created", site="local", doctype="Customer", name="CUST-00007", outcome="created")
    with db.read() as s:
        names = s.exec(select(SyncName).where(SyncName.record_id == record.id)).all()
        assert {n.site: n.name for n in names} == {"cloud": "CUST-00001", "local": "CUST-00007"}
        assert s.get(SyncRecord, record.id).base == {"customer_name": "Ação [red]x"}
        assert open_conflicts(s)[0].names == {"cloud": "CUST-00001"}
        assert log_tail(s)[0].outcome == "created"
        assert s.get(SyncRecord, record.id).created_at.tzinfo is not None


def test_unique_name_per_site(db: Database) -> None:
    with db.write() as s:
        record = SyncRecord(doctype="Item")
        s.add(record)
        s.flush()
        s.add(SyncName(record_id=record.id, site="cloud", doctype="Item", name="A"))
    with pytest.raises(IntegrityError, match=r"UNIQUE|unique constraint"), db.write() as s:
        s.add(SyncName(record_id=record.id, site="cloud", doctype="Item", name="A"))


def test_enqueue_coalesces_pending_events(db: Database) -> None:
    with db.write() as s:
        first = queue.enqueue(s, site="cloud", doctype="Customer", name="C1", payload={"modified": "1"})
        second = queue.enqueue(s, site="cloud", doctype="Customer", name="C1", payload={"modified": "2"})
        other = queue.enqueue(s, site="local", doctype="Customer", name="C1")
    assert first.id == second.id != other.id
    assert second.coalesced == 1 and second.payload == {"modified": "2"}


def test_claim_is_exclusive_across_workers(db: Database) -> None:
    with db.write() as s:
        for i in range(200):
            queue.enqueue(s, site="cloud", doctype="Item", name=f"I{i}")
    claimed: list[int] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        other = Database(db.url)
        while items := queue.claim(other, owner, limit=7):
            with lock:
                claimed.extend(item.id for item in items)
        other.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == list(range(1, 201))  # every item once, none twice


def test_lease_of_a_crashed_worker_expires(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Item", name="X")
    (item,) = queue.claim(db, "dead-worker", lease_seconds=30)
    assert queue.claim(db, "w2") == []
    later = utcnow() + timedelta(seconds=31)
    assert queue.requeue_expired(db, now=later) == 1
    (again,) = queue.claim(db, "w2", now=later)
    assert again.id == item.id and again.attempts == 2
    assert not queue.complete(db, item.id, "dead-worker")  # the old owner lost its lease
    assert queue.complete(db, item.id, "w2")


def test_backoff_then_dead_letter(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Item", name="X", max_attempts=3)
    now = utcnow()
    for attempt in range(1, 4):
        (item,) = queue.claim(db, "w", now=now)
        failed = queue.fail(
            db, item.id, "w", error="boom", error_code="ERP001", backoff_base=2, backoff_max=60, now=now
        )
        if attempt < 3:
            assert failed.status == QueueStatus.FAILED
            delay = (failed.next_attempt_at - now).total_seconds()
            ceiling = 2 * 2 ** (attempt - 1)  # base 2 s, doubling per attempt, full jitter in [ceiling/2, ceiling]
            assert ceiling / 2 <= delay <= ceiling
            assert queue.claim(db, "w", now=now) == []  # not due yet
            now = failed.next_attempt_at
        else:
            assert failed.status == QueueStatus.DEAD and failed.last_error == "boom"
    assert queue.retry(db, [item.id]) == 1
    (revived,) = queue.claim(db, "w")
    assert revived.attempts == 1


def test_release_gives_items_back(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Item", name="X")
    queue.claim(db, "w")
    assert queue.release(db, "w") == 1
    with db.read() as s:
        item = s.exec(select(QueueItem)).one()
    assert item.status == QueueStatus.PENDING and item.attempts == 0


def test_queue_depth_and_oldest_pending(db: Database) -> None:
    with db.write() as s:
        queue.enqueue(s, site="a", doctype="D", name="1", now=utcnow() - timedelta(minutes=5))
        queue.enqueue(s, site="a", doctype="D", name="2")
    with db.read() as s:
        depth = queue_depth(s)
    assert depth.by_status["pending"] == 2 and depth.by_status["dead"] == 0
    assert timedelta(minutes=4) < depth.oldest_pending_age < timedelta(minutes=6)


@pytest.mark.sqlite_only
def test_backup_is_readable_while_a_writer_is_active(db: Database, tmp_path: Path) -> None:
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            with db.write() as s:
                add_log(s, f"line {n}")
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while True:
            with db.read() as s:
                if len(log_tail(s, limit=50)) >= 50:
                    break
        backup(db.path, tmp_path / "copy.db")
    finally:
        stop.set()
        thread.join()
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert copy.execute("SELECT count(*) FROM sync_log").fetchone()[0] >= 50
    with pytest.raises(StoreError, match="exists"):
        backup(db.path, tmp_path / "copy.db")


def test_not_a_database_names_the_file(tmp_path: Path) -> None:
    bogus = tmp_path / "state.db"
    bogus.write_text("hello, I am a text file")
    with pytest.raises(StoreError, match=f"{bogus} is not a SQLite database"):
        open_database(f"sqlite:///{bogus}")


@pytest.mark.sqlite_only
def test_corrupt_database_names_the_file(db: Database) -> None:
    with db.write() as s:
        for i in range(300):
            add_log(s, "x" * 200 + str(i))
    db.dispose()
    data = bytearray(db.path.read_bytes() if db.path.stat().st_size else b"")
    wal = Path(str(db.path) + "-wal")
    if wal.exists() and wal.stat().st_size:
        sqlite3.connect(db.path).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
        data = bytearray(db.path.read_bytes())
    data[4096 * 2 : 4096 * 6] = b"\xff" * (4096 * 4)  # smash pages behind the header
    db.path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=str(db.path)):
        open_database(db.url)


def test_newer_schema_version_is_refused(db: Database) -> None:
    with db.write() as s:
        s.get(Meta, "schema_version").value = "99"
    with pytest.raises(StoreError, match="schema version 99, newer than this erpsync-tui"):
        open_database(db.url)


def test_log_messages_are_redacted(db: Database) -> None:
    from erpsync_tui.secrets import MASK, register_secret

    register_secret("super-secret-token")
    with db.write() as s:
        add_log(s, "request with token abc:super-secret-token failed")
    with db.read() as s:
        assert s.exec(select(SyncLog.message)).one() == f"request with token abc:{MASK} failed"


# A process that holds a lease until told to stop (one line on stdin), then closes every connection.
_LEASE_HOLDER = """
import sys
from erpsync_tui.store import open_database
from erpsync_tui.store.control import acquire_lease, release_lease
db = open_database(sys.argv[1])
acquire_lease(db, sys.argv[2], 60)
print("held", flush=True)
sys.stdin.readline()
release_lease(db, sys.argv[2])
db.dispose()
"""


def _hold_lease(url: str, holder: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _LEASE_HOLDER, url, holder], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.sqlite_only
def test_opening_the_database_again_keeps_this_process_seeing_other_writers(db: Database) -> None:
    """Regression: the file check read the header with open()/close(), which drops this process's SQLite
    locks; the next process to close its last connection then deleted the WAL index under us and every
    later read here was stale (a console stuck on "stopped" while a new engine ran)."""
    url = f"sqlite:///{db.path}"
    first = _hold_lease(url, "first")
    assert engine_status(db).holder == "first"
    open_database(url).dispose()  # e.g. a second view of the same file in this process
    first.communicate("stop\n", timeout=30)
    second = _hold_lease(url, "second")
    try:
        assert engine_status(db).holder == "second"
    finally:
        second.communicate("stop\n", timeout=30)


# ------------------------------------------------------------------------------------------ try_write_now


def _meta_value(db: Database, key: str) -> str | None:
    with db.read() as session:
        row = session.get(Meta, key)
        return None if row is None else row.value


@pytest.mark.sqlite_only
def test_try_write_now_commits_when_the_lock_is_free(db: Database) -> None:
    with db.try_write_now() as connection:
        assert connection is not None
        connection.execute(Meta.__table__.insert().values(key="probe", value="1"))  # type: ignore[attr-defined]
    assert _meta_value(db, "probe") == "1"


@pytest.mark.sqlite_only
def test_try_write_now_gives_none_at_once_while_another_process_writes(db: Database) -> None:
    assert db.path is not None
    other = sqlite3.connect(db.path, isolation_level=None)  # SQLite's locks: another connection = another writer
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with db.try_write_now() as connection:
            assert connection is None
        assert time.monotonic() - started < 1.0  # not the 10 s busy timeout
    finally:
        other.execute("ROLLBACK")
        other.close()
    with db.try_write_now() as connection:  # the same connection works once the lock is free again
        assert connection is not None


@pytest.mark.sqlite_only
def test_try_write_now_gives_none_while_this_process_writes(db: Database) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with db.write():
            entered.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(5)
        with db.try_write_now() as connection:
            assert connection is None
    finally:
        release.set()
        holder.join()


@pytest.mark.sqlite_only
def test_try_write_now_rolls_back_on_error_and_other_writers_still_wait(db: Database) -> None:
    with pytest.raises(RuntimeError), db.try_write_now() as connection:
        assert connection is not None
        connection.execute(Meta.__table__.insert().values(key="rolled", value="1"))  # type: ignore[attr-defined]
        raise RuntimeError("boom")
    assert _meta_value(db, "rolled") is None
    db.dispose()  # its never-waiting connection must not go back to the pool for write() to inherit
    with db.write() as session:
        assert session.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


@pytest.mark.sqlite_only
def test_writers_of_other_processes_queue_on_the_writer_lock(db: Database) -> None:
    """A process holding `<db>.writelock` makes try_write_now refuse at once and write() wait, not fail."""
    assert db.path is not None
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(db.path) + '.writelock'!r}, os.O_RDWR)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(1.0)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with db.try_write_now() as connection:
            assert connection is None
        started = time.monotonic()
        with db.write() as session:  # queues until the holder exits, then writes
            session.add(Meta(key="after_holder", value="1"))
        waited = time.monotonic() - started
    finally:
        holder.wait(10)
    assert 0.3 < waited < 5.0
    assert _meta_value(db, "after_holder") == "1"

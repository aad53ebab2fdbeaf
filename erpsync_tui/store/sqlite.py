"""Everything SQLite-specific lives here: PRAGMAs, transaction mode, file checks, backup, maintenance.

The rest of the store speaks portable SQLAlchemy, so the same code runs on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, event

BUSY_TIMEOUT_MS = 10_000


class StoreError(Exception):
    """The state database cannot be used; the message names the file and what to do."""


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
        return Path(url[len(prefix) :])
    return None


def check_file(path: Path) -> None:
    """Fail early, naming the file, when it exists but is not a SQLite database.

    The file is read through SQLite, never with `open()`: closing any descriptor of a file drops every POSIX
    lock this process holds on it, SQLite's included. Another process closing its last connection then takes
    the database for unused, deletes the WAL and its index, and this process's connections go on reading the
    deleted index: blind to every later commit (seen as a console stuck on an engine that had stopped).
    """
    if not path.exists() or path.stat().st_size == 0:
        return
    if not os.access(path, os.R_OK):
        raise StoreError(f"cannot read state database {path}: permission denied")
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            probe.execute("PRAGMA schema_version").fetchone()
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise StoreError(f"{path} is not a SQLite database (wrong file header); point --db at a state "
                             "database") from None
        # Anything else (busy, an unreadable WAL) is for the real open to report with its reason.


def engine_options() -> dict[str, Any]:
    # check_same_thread=False: connections move between the event loop's worker threads.
    return {"connect_args": {"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}}


def configure_engine(engine: Engine, *, immediate: bool) -> None:
    """WAL, NORMAL sync and a busy timeout on every connection.

    Write sessions begin with BEGIN IMMEDIATE: a deferred transaction that reads and then writes can fail
    at once with "database is locked" when another writer committed in between (the busy handler is not
    consulted for that upgrade), which is exactly what several workers and consoles would hit.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (SQLAlchemy's pysqlite recipe)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class WriterLock:
    """The one writer at a time that SQLite admits, as a queue every process waits in, not a sleep.

    A writer that finds SQLite's write lock taken sleeps in its busy handler in growing steps (1, 2, 5, 10 …
    100 ms) and tries again; under steady contention between processes (the engine and receiver workers) that
    sleeping, not the writes, sets the latency. So writers first take this lock: a thread lock within the
    process, then an flock on `<database>.writelock` across processes, which the kernel hands to the next
    waiter the moment it is released. SQLite's own locking still guards the data; a process that skips this
    lock (an older version, the sqlite3 shell) is only back to the busy handler. Without a usable lock file
    (a read-only folder), the thread lock alone.
    """

    def __init__(self, database: Path | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = database.with_name(database.name + ".writelock") if database is not None else None
        self._fd = -1

    def _open(self) -> None:
        # Opened on first use, and again after close() (Database.dispose), under the thread lock.
        if self._fd < 0 and self._path is not None:
            with contextlib.suppress(OSError):
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, blocking: bool = True) -> bool:
        if not self._thread_lock.acquire(blocking):
            return False
        self._open()
        if self._fd < 0:
            return True
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._thread_lock.release()
            return False
        except OSError:
            pass  # a file system without flock: the thread lock and SQLite's own locking still hold
        return True

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, _type: type[BaseException] | None, _value: BaseException | None,
                 _tb: TracebackType | None) -> None:
        self.release()

    def close(self) -> None:
        """Close the lock file (reopened on the next acquire); waits for a writer of this process to finish."""
        with self._thread_lock:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)


def never_wait(dbapi_connection: Any) -> None:
    """This connection fails at once with "database is locked" instead of waiting for another writer."""
    dbapi_connection.execute("PRAGMA busy_timeout = 0")


def is_busy(exc: BaseException) -> bool:
    """The error SQLite gives a writer that found the write lock taken (SQLITE_BUSY)."""
    orig = getattr(exc, "orig", exc)
    return isinstance(orig, sqlite3.OperationalError) and getattr(orig, "sqlite_errorname", "") in (
        "SQLITE_BUSY", "SQLITE_BUSY_SNAPSHOT", "SQLITE_BUSY_RECOVERY")


def journal_mode(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())


def quick_check(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA quick_check").scalar())


def integrity_check(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())


def optimize(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA optimize")


def vacuum(engine: Engine) -> None:
    # VACUUM cannot run inside a transaction: use a raw autocommit connection.
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("VACUUM")  # type: ignore[union-attr]
    finally:
        raw.close()


def wal_checkpoint(engine: Engine) -> None:
    # Outside any transaction, as VACUUM: through the engine's connection it ran inside the writer engine's
    # BEGIN IMMEDIATE and always failed with "database table is locked" (so did every retention maintenance).
    raw = engine.raw_connection()
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]
    finally:
        raw.close()


def backup(source: Path, destination: Path) -> None:
    """Copy a live database with SQLite's online backup API (consistent even while a writer is active)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        raise StoreError(f"backup target {destination} exists; choose a new path")
    check_file(source)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    dst = sqlite3.connect(destination)
    try:
        src.backup(dst, pages=1024)
        dst.execute("PRAGMA journal_mode = DELETE")  # a backup is a single self-contained file
    except sqlite3.DatabaseError as exc:
        destination.unlink(missing_ok=True)
        raise StoreError(f"backup of {source} failed: {exc}") from None
    finally:
        dst.close()
        src.close()


def inspect_backup(path: Path) -> tuple[str, int | None]:
    """A backup file's `PRAGMA integrity_check` answer and its schema version (None: not a state database).

    Opened read-only and immutable: checking a backup never writes to it.
    """
    if not path.is_file():
        raise StoreError(f"backup {path} does not exist")
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            integrity = str(probe.execute("PRAGMA integrity_check").fetchone()[0])
            try:
                row = probe.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            except sqlite3.DatabaseError:
                row = None
        finally:
            probe.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} cannot be read as a SQLite database: {exc}") from None
    return integrity, int(row[0]) if row else None


def restore_into(backup_file: Path, live: Path) -> None:
    """Copy `backup_file` over the live database in place, page by page, with SQLite's backup API.

    In place rather than by replacing the file: the WAL and its index stay consistent for every process that
    opens the database afterwards (a file swapped under a WAL would pair the new file with the old log).
    """
    src = sqlite3.connect(f"{backup_file.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    dst = sqlite3.connect(live, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode = WAL")
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"restore of {backup_file} into {live} failed: {exc}") from None
    finally:
        dst.close()
        src.close()


def status_count_ddl(table: str) -> list[str]:
    """Triggers that keep `status_count` right for `table` in the transaction of every change (store/counts.py)."""

    def bump(status: str, delta: int) -> str:
        return (f"INSERT INTO status_count (source, status, n) VALUES ('{table}', {status}, {delta}) "
                f"ON CONFLICT (source, status) DO UPDATE SET n = n + ({delta});")

    return [
        f"DROP TRIGGER IF EXISTS {table}_count_ins",
        f"DROP TRIGGER IF EXISTS {table}_count_del",
        f"DROP TRIGGER IF EXISTS {table}_count_upd",
        f"CREATE TRIGGER {table}_count_ins AFTER INSERT ON {table} BEGIN {bump('NEW.status', 1)} END",
        f"CREATE TRIGGER {table}_count_del AFTER DELETE ON {table} BEGIN {bump('OLD.status', -1)} END",
        f"CREATE TRIGGER {table}_count_upd AFTER UPDATE OF status ON {table} WHEN OLD.status IS NOT NEW.status "
        f"BEGIN {bump('OLD.status', -1)} {bump('NEW.status', 1)} END",
    ]

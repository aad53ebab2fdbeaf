"""Opening the state database: engines, schema creation and version checks, sessions.

Two engines share one URL: `read()` sessions use plain deferred transactions (readers never wait for
writers under WAL), `write()` sessions take the write lock up front (see `sqlite.configure_engine`).
On PostgreSQL reads are plain transactions and every write transaction takes an advisory writer lock first
(`postgres.serialise_writers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, select
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlmodel import Session, SQLModel

from erpsync_tui.store import counts, postgres, sqlite
from erpsync_tui.store.models import SCHEMA_VERSION, Meta
from erpsync_tui.store.sqlite import StoreError


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.path: Path | None = sqlite.sqlite_path(url)
        self.is_sqlite = sqlite.is_sqlite_url(url)
        self.writer_engine = self._make_engine(immediate=True)
        self.reader_engine = self._make_engine(immediate=False)
        self._lock = sqlite.WriterLock(self.path) if self.is_sqlite else None
        self._write_lock: AbstractContextManager[Any] = self._lock if self._lock is not None else nullcontext()
        self._now_connection: Connection | None = None  # try_write_now's own connection, which never waits

    def _make_engine(self, *, immediate: bool) -> Engine:
        if not self.is_sqlite:
            engine = create_engine(self.url, pool_pre_ping=True)
            if immediate and postgres.is_postgres_url(self.url):
                postgres.serialise_writers(engine)  # writers one at a time, as on SQLite (see store/postgres.py)
            return engine
        engine = create_engine(self.url, **sqlite.engine_options())
        sqlite.configure_engine(engine, immediate=immediate)
        return engine

    @property
    def label(self) -> str:
        """What to call this database in messages: its file, or its URL without credentials."""
        if self.path is not None:
            return str(self.path)
        return self.writer_engine.url.render_as_string(hide_password=True)

    # ----------------------------------------------------------------------------------- schema

    def open(self) -> Database:
        """Create or verify the schema; raise StoreError naming the file when it cannot be used.

        Cost independent of the database's size: a file damaged beyond its schema opens, and the integrity
        check (health job, `doctor`) reports it.
        """
        if self.path is not None:
            sqlite.check_file(self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the folder for {self.path}: {exc.strerror}") from None
        try:
            with self._schema_guard():
                self._check_version()
                SQLModel.metadata.create_all(self.writer_engine)
                self._stamp_version()
            # No PRAGMA quick_check here: it reads every page (3.6 s on a 1.1 GB file, disk-bound on a cold
            # cache) and every command opens the database. Integrity is checked by the engine's scheduled
            # health job and by `doctor`, once each (health.check_database_integrity).
        except (DatabaseError, OperationalError) as exc:
            raise StoreError(f"state database {self.label} cannot be opened: {_reason(exc)}") from None
        return self

    def _schema_guard(self) -> AbstractContextManager[Any]:
        """PostgreSQL: an advisory lock, so hosts opening an empty database at once create the schema once."""
        if self.is_sqlite:
            return nullcontext()
        # On a reader connection: one of the writer engine would hold the writer lock while it waits for
        # this one, and a process holding this one waits for the writer lock in create_all (a deadlock).
        return postgres.schema_lock(self.reader_engine)

    def _check_version(self) -> None:
        if not inspect(self.reader_engine).has_table(Meta.__tablename__):
            return
        with self.read() as session:
            row = session.get(Meta, "schema_version")
        if row is not None and int(row.value) > SCHEMA_VERSION:
            raise StoreError(
                f"state database {self.label} has schema version {row.value}, newer than this erpsync-tui "
                f"understands ({SCHEMA_VERSION}); upgrade erpsync-tui or use another --db"
            )

    def _stamp_version(self) -> None:
        with self.write() as session:
            if session.get(Meta, "schema_version") is None:
                session.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
            counts.install(session)  # once per database; after that one read of its meta key

    def schema_version(self) -> int | None:
        with self.read() as session:
            value = session.exec(select(Meta.value).where(Meta.key == "schema_version")).first()
        return int(value[0]) if value else None

    # ----------------------------------------------------------------------------------- sessions

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.reader_engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any error.

        On SQLite, writers queue on `sqlite.WriterLock` first (threads of this process, then every process
        on the same file): SQLite admits one writer at a time anyway, and a writer waiting inside SQLite's
        busy handler sleeps in growing steps (up to 100 ms), which under contention wastes far more time
        than the writes themselves.
        """
        with self._write_lock, Session(self.writer_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """`write()` as a Core connection (no ORM Session, ~0.1 ms cheaper per transaction)."""
        with self._write_lock, self.writer_engine.begin() as connection:
            yield connection

    @contextmanager
    def try_write_now(self) -> Iterator[Connection | None]:
        """A write transaction if the write lock is free at this instant, else None at once (never waits).

        For writes made on an event loop, where a wait would stall every request: the caller hands the
        work to a thread when it gets None. SQLite only (a network database always answers None): the lock
        of `write()` is tried without blocking, then SQLite's own through a connection whose busy timeout
        is zero. Commits on success, rolls back on any error.
        """
        if self._lock is None or not self._lock.acquire(blocking=False):
            yield None
            return
        try:
            connection = self._nowait_connection()
            try:
                transaction = connection.begin()  # BEGIN IMMEDIATE: fails at once if another process writes
            except OperationalError as exc:
                if not sqlite.is_busy(exc):
                    raise
                connection.rollback()
                yield None
                return
            with transaction:
                yield connection
        finally:
            self._lock.release()

    def _nowait_connection(self) -> Connection:
        if self._now_connection is None or self._now_connection.closed:
            connection = self.writer_engine.connect()
            sqlite.never_wait(connection.connection.driver_connection)
            self._now_connection = connection
        return self._now_connection

    def dispose(self) -> None:
        if self._now_connection is not None:
            # Never back to the pool: another user would inherit its zero busy timeout.
            self._now_connection.invalidate()
            self._now_connection.close()
            self._now_connection = None
        if self._lock is not None:
            self._lock.close()
        self.writer_engine.dispose()
        if self.reader_engine is not self.writer_engine:
            self.reader_engine.dispose()


def _reason(exc: Exception) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig or exc)
    if "file is not a database" in text or "malformed" in text:
        return f"{text} — the file is corrupt; restore it from a backup (`erpsync-tui backup` makes one)"
    if "locked" in text:
        return f"{text} — another process holds a write lock for too long"
    if "readonly" in text or "read-only" in text:
        return f"{text} — check the file's and folder's permissions"
    return text


def open_database(url: str) -> Database:
    return Database(url).open()

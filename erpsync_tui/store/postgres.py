"""Everything PostgreSQL-specific: the schema lock, server health figures, backup with pg_dump.

The counterparts of `store/sqlite.py`:
- the writer lock: every write transaction first takes one transaction-level advisory lock, so writers on
  every host run one at a time, as SQLite runs them. The store and the engine read and then write inside one
  write transaction in many places (enqueue's coalescing, a document's name pairs, the lease fence), which
  SQLite's single writer makes atomic and READ COMMITTED does not: without the lock two receivers stored the
  same event twice and two tasks inserted the same `sync_name` (a UniqueViolation, retried). Readers take no
  lock and never wait. The queue claims (FOR UPDATE SKIP LOCKED) and the engine lease (INSERT … ON CONFLICT,
  conditional UPDATE) are atomic on their own as well, without it.
What has none, on purpose:
- VACUUM/ANALYZE: retention deletes rows the same way on both backends and leaves the rest to autovacuum;
- a file check, integrity_check and disk free: the server owns its files. Health asks instead whether the
  connection works, how large the database is and whether a transaction has stayed open for long.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url

from erpsync_tui.store.sqlite import StoreError

# pg_advisory_lock key of schema creation: two hosts starting on an empty database at once would both run
# CREATE TABLE, and the second fails on pg_type's unique index; the lock makes the second wait and find them.
SCHEMA_LOCK_KEY = 0x65727073796E63  # "erpsync"
WRITER_LOCK_KEY = 0x65727073796E64  # the writer lock's advisory key (one per database)


def is_postgres_url(url: str) -> bool:
    return url.startswith("postgresql")


def serialise_writers(engine: Engine) -> None:
    """Every transaction of `engine` starts by taking the writer lock (released at commit or rollback)."""

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")


@contextlib.contextmanager
def schema_lock(engine: Engine) -> Iterator[None]:
    """Hold a session-level advisory lock while the schema is checked, created and stamped."""
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEMA_LOCK_KEY})
            conn.commit()


# One trigger function for every counted table: TG_TABLE_NAME says which (store/counts.py).
_COUNT_FUNCTION = """
CREATE OR REPLACE FUNCTION erpsync_count_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO status_count (source, status, n) VALUES (TG_TABLE_NAME, OLD.status, -1)
        ON CONFLICT (source, status) DO UPDATE SET n = status_count.n - 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO status_count (source, status, n) VALUES (TG_TABLE_NAME, NEW.status, 1)
        ON CONFLICT (source, status) DO UPDATE SET n = status_count.n + 1;
    END IF;
    RETURN NULL;
END $$
"""


def status_count_ddl(table: str) -> list[str]:
    """Triggers that keep `status_count` right for `table` in the transaction of every change.

    No contention of their own: every write transaction already holds the writer lock (`serialise_writers`).
    """
    return [
        _COUNT_FUNCTION,
        f"DROP TRIGGER IF EXISTS {table}_count_insdel ON {table}",
        f"DROP TRIGGER IF EXISTS {table}_count_upd ON {table}",
        f"CREATE TRIGGER {table}_count_insdel AFTER INSERT OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION erpsync_count_status()",
        f"CREATE TRIGGER {table}_count_upd AFTER UPDATE OF status ON {table} FOR EACH ROW "
        "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION erpsync_count_status()",
    ]


@dataclass(frozen=True, slots=True)
class LongTransaction:
    pid: int
    state: str
    application: str
    seconds: float
    query: str


@dataclass(frozen=True, slots=True)
class ServerHealth:
    version: str
    size_bytes: int
    connections: int
    oldest: LongTransaction | None  # the longest-open transaction on this database (other than ours)


def server_health(engine: Engine) -> ServerHealth:
    """Connection, database size, connection count and the oldest open transaction, in one round trip each."""
    with engine.connect() as conn:
        version = str(conn.execute(text("SHOW server_version")).scalar())
        size = int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
        connections = int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")).scalar() or 0)
        row = conn.execute(text(
            "SELECT pid, coalesce(state, ''), coalesce(application_name, ''), "
            "extract(epoch FROM clock_timestamp() - xact_start), left(coalesce(query, ''), 200) "
            "FROM pg_stat_activity WHERE datname = current_database() AND xact_start IS NOT NULL "
            "AND pid <> pg_backend_pid() ORDER BY xact_start LIMIT 1")).first()
    oldest = None if row is None else LongTransaction(int(row[0]), row[1], row[2], float(row[3]), row[4])
    return ServerHealth(version, size, connections, oldest)


def pg_dump_command(url: str, destination: Path) -> tuple[list[str], dict[str, str]]:
    """pg_dump's argv (custom format: `pg_restore` reads it) and environment; the password only in the latter."""
    parsed = make_url(url)
    args = ["pg_dump", "--format=custom", "--no-owner", f"--file={destination}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    args.append(parsed.database or "postgres")
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return args, env


def backup(url: str, destination: Path) -> None:
    """A consistent snapshot of the database with `pg_dump` (one transaction; safe while the engine runs)."""
    if destination.exists():
        raise StoreError(f"backup target {destination} exists; choose a new path")
    args, env = pg_dump_command(url, destination)
    shown = " ".join(args)
    if shutil.which("pg_dump") is None:
        raise StoreError(f"pg_dump is not installed here; install the PostgreSQL client (Debian: apt-get install "
                         f"postgresql-client) or run on a host that has it: {shown}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        destination.unlink(missing_ok=True)
        raise StoreError(f"pg_dump failed ({done.returncode}): {done.stderr.strip()[-500:]}")

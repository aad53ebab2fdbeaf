"""Per-status row counts of `sync_record` and `queue_item`, kept by database triggers (table `status_count`).

Why: `status` (and the console's dashboard) showed exact counts by a GROUP BY over the status index, a read
that grows with the database — on a cold page cache a 1,000,000-record database answered 1.24–1.38x slower
than a 10,000-record one. The triggers change the counts in the same transaction as the rows, so a rollback,
a crash mid-write or a restored backup leaves them exactly as right as the rows themselves, whatever code (or
an operator's sqlite3 shell) wrote the rows.

Installed once per database (meta key `status_counts`), in the transaction that also seeds them from a real
COUNT; until then (another backend, a backup restored from before) readers fall back to the exact COUNT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlmodel import Session

from erpsync_tui.store import postgres, sqlite
from erpsync_tui.store.models import Meta, QueueItem, StatusCount, SyncRecord

if TYPE_CHECKING:  # db.py imports this module to install the counts on open
    from erpsync_tui.store.db import Database

META_KEY = "status_counts"
COUNTED: dict[str, type[SyncRecord] | type[QueueItem]] = {"sync_record": SyncRecord, "queue_item": QueueItem}


def _ddl(dialect: str, table: str) -> list[str] | None:
    if dialect == "sqlite":
        return sqlite.status_count_ddl(table)
    if dialect == "postgresql":
        return postgres.status_count_ddl(table)
    return None


def install(session: Session) -> bool:
    """Create the triggers and seed the counts, once; inside the caller's write transaction. False: no support."""
    if session.get(Meta, META_KEY) is not None:
        return True
    connection = session.connection()
    dialect = connection.dialect.name
    statements = [s for table in COUNTED for s in (_ddl(dialect, table) or [])]
    if not statements:
        return False
    for statement in statements:
        connection.exec_driver_sql(statement)
    recount(session)
    session.add(Meta(key=META_KEY, value="1"))
    return True


def exact_counts(session: Session, table: str) -> dict[str, int]:
    """COUNT(*) per status, read from the rows (what the cached counts must equal)."""
    model = COUNTED[table]
    rows = session.execute(select(model.status, func.count()).group_by(model.status)).all()
    return {str(status): int(n) for status, n in rows}


def recount(session: Session) -> None:
    """Set every cached count from the rows (the seed; also a repair, inside a write transaction)."""
    session.execute(delete(StatusCount))
    for table in COUNTED:
        for status, n in exact_counts(session, table).items():
            session.add(StatusCount(source=table, status=status, n=n))
    session.flush()


def cached_counts(session: Session, table: str) -> dict[str, int] | None:
    """The kept counts per status (statuses with none left out), or None where they are not installed."""
    if session.get(Meta, META_KEY) is None:
        return None
    rows = session.execute(select(StatusCount.status, StatusCount.n).where(StatusCount.source == table)).all()
    return {str(status): int(n) for status, n in rows if n}


def counts(session: Session, table: str) -> dict[str, int]:
    """Rows per status: the kept counts where installed, else the exact COUNT."""
    cached = cached_counts(session, table)
    return cached if cached is not None else exact_counts(session, table)


def _drift(session: Session) -> list[str]:
    """Tables whose kept counts differ from their rows ("table: kept {…}, rows {…}"); none when not installed."""
    found = []
    for table in COUNTED:
        cached = cached_counts(session, table)
        if cached is None:
            return []
        exact = {status: n for status, n in exact_counts(session, table).items() if n}
        if cached != exact:
            found.append(f"{table}: kept {cached}, rows {exact}")
    return found


def verify(db: Database) -> list[str]:
    """Compare the kept counts with the rows; where they differ, recount them (and say what differed).

    They cannot drift through this product (the triggers run in every writing transaction), but a data-only
    restore with the triggers active, or rows written with triggers disabled, would leave them wrong: the
    integrity check (health job, `doctor`) calls this. Read first; the writer lock only when a repair is due,
    and the comparison is repeated under it (a PostgreSQL read may see two commits apart).
    """
    with db.read() as session:
        if not _drift(session):
            return []
    with db.write() as session:
        found = _drift(session)
        if found:
            recount(session)
        return found

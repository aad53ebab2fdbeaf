"""Retention: prune finished queue items and old log lines, then let the database tidy itself."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete

from erpsync_tui.store import sqlite
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import QueueItem, QueueStatus, SyncLog, utcnow


@dataclass(frozen=True, slots=True)
class Pruned:
    queue_items: int
    log_rows: int


def prune(db: Database, *, keep_days: int, now: datetime | None = None) -> Pruned:
    """Delete done and discarded queue items and log rows older than `keep_days` (dead items stay until an
    operator acts; the operator_action row keeps the record of a discard)."""
    cutoff = (now or utcnow()) - timedelta(days=keep_days)
    with db.write() as session:
        items = session.execute(
            delete(QueueItem).where(QueueItem.status.in_([QueueStatus.DONE, QueueStatus.DISCARDED]),  # type: ignore[attr-defined]
                                   QueueItem.updated_at < cutoff)
        )
        logs = session.execute(delete(SyncLog).where(SyncLog.ts < cutoff))
        return Pruned(int(items.rowcount or 0), int(logs.rowcount or 0))  # type: ignore[attr-defined]


def maintain(db: Database, *, vacuum: bool = False) -> None:
    """Planner statistics (and, now and then, VACUUM) on SQLite; PostgreSQL's autovacuum does this itself."""
    if not db.is_sqlite:
        return
    sqlite.optimize(db.writer_engine)
    sqlite.wal_checkpoint(db.writer_engine)
    if vacuum:
        sqlite.vacuum(db.writer_engine)

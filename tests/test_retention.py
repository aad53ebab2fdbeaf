"""Retention on both backends: old done items and old log lines go, dead items and recent rows stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from erpsync_tui.store import open_database, queue, retention
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import QueueItem, QueueStatus, SyncLog, utcnow

pytestmark = pytest.mark.backends


def test_prune_deletes_old_done_items_and_log_lines_only(db_url: str) -> None:
    db = open_database(db_url)
    old, now = utcnow() - timedelta(days=40), utcnow()
    with db.write() as s:
        for n, (status, when) in enumerate([(QueueStatus.DONE, old), (QueueStatus.DONE, now),
                                            (QueueStatus.DEAD, old), (QueueStatus.PENDING, old)]):
            item = queue.enqueue(s, site="cloud", doctype="Item", name=f"I{n}", now=when, coalesce=False)
            item.status, item.updated_at = status, when
            s.add(item)
        s.add(SyncLog(message="old line", ts=old))
        add_log(s, "new line")
    pruned = retention.prune(db, keep_days=30)
    retention.maintain(db, vacuum=True)  # SQLite: optimize, checkpoint, VACUUM; PostgreSQL: autovacuum's job
    with db.read() as s:
        left = sorted(item.name for item in s.exec(select(QueueItem)))
        lines = [row.message for row in s.exec(select(SyncLog))]
    db.dispose()
    assert (pruned.queue_items, pruned.log_rows) == (1, 1)
    assert left == ["I1", "I2", "I3"] and lines == ["new line"]

"""A bulk run's tally, and how one document's failure inside a run is kept: logged with its code and queued.

Shared by the bulk walk, deletes, renames and reconcile; it imports none of them (they import it).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.engine.outcomes import DocResult, failure_code
from erpsync_tui.secrets import redact
from erpsync_tui.store import queue
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import QueueKind, QueueStatus, utcnow

if TYPE_CHECKING:
    from erpsync_tui.engine.sync import SyncEngine

log = logging.getLogger("erpsync.engine")


@dataclass
class SyncSummary:
    processed: int = 0
    writes: int = 0
    failed: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    paired: int = 0  # documents both sites already held, paired by the matching rules before the walk

    def add(self, result: DocResult) -> None:
        self.processed += 1
        self.writes += result.writes
        self.outcomes[str(result.outcome)] += 1

    def merge(self, part: dict[str, Any]) -> None:
        """Add another summary's counts (as_dict() of one, e.g. from a batch process)."""
        self.processed += part["processed"]
        self.writes += part["writes"]
        self.failed += part["failed"]
        self.outcomes.update(part["outcomes"])

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcomes"] = dict(self.outcomes)
        return data


def _log_listing_failure(engine: SyncEngine, doctype: str, site: str, exc: ConnectorError) -> None:
    log.warning("listing failed code=%s %s on %s: %s", exc.code, doctype, site, exc)
    with engine.db.write() as session:
        add_log(session, f"listing {doctype} on {site} failed; will resume from the checkpoint: {exc}",
                level="ERROR", site=site, doctype=doctype, outcome="failed", error_code=str(exc.code))


def record_failure(engine: SyncEngine, doctype: str, site: str, name: str, exc: BaseException) -> None:
    """Log the failure with its code and put the document on the durable queue for a retry with backoff."""
    code, retry_after = failure_code(exc)
    message = f"{doctype} {name} from {site}: {exc}"
    log.warning("sync failed code=%s %s", code, message)
    retry = engine.config.sync.retry
    now = utcnow()
    with engine.db.write() as session:
        item = queue.enqueue(session, kind=QueueKind.SYNC, site=site, doctype=doctype, name=name,
                             max_attempts=retry.max_attempts, now=now)
        # This run was the first attempt: the item waits out its backoff like any retried item.
        delay = max(queue.backoff_delay(1, retry.backoff_base_seconds, retry.backoff_max_seconds), retry_after or 0)
        item.status, item.attempts = QueueStatus.FAILED, max(item.attempts, 1)
        item.next_attempt_at = now + timedelta(seconds=delay)
        item.last_error, item.error_code = redact(message)[:4000], code
        session.add(item)
        add_log(session, message, level="ERROR", site=site, doctype=doctype, name=name, outcome="failed",
                error_code=code, queue_item_id=item.id)


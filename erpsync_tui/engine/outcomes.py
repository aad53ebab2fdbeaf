"""What syncing one document yields and how it fails: the value types every sync path shares.

Kept apart from `sync.py` so the paths that produce these (bulk, lifecycle, renames, reconcile, the queue
worker) import them without importing the engine itself — that import was a loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from erpsync_tui.connectors.base import (
    AuthenticationFailed,
    CircuitOpen,
    ConnectorError,
    PermissionDenied,
    RateLimited,
)
from erpsync_tui.engine.records import RecordView, Side
from erpsync_tui.errors import ErpSyncError, ErrorCode


class Outcome(StrEnum):
    SKIPPED = "skipped"  # nothing to do (also: the echo of our own write)
    CREATED = "created"
    UPDATED = "updated"
    MERGED = "merged"
    POLICY = "resolved_by_policy"
    CONFLICT = "conflict"
    RESOLVED = "resolved"
    DELETED = "deleted"
    ADOPTED = "adopted"  # a lost create found on the target, or a document both sites already had
    AMBIGUOUS = "ambiguous"  # matches 2+ documents on the other site: neither paired nor created (ERP009)
    NOT_FOUND = "not_found"


@dataclass(slots=True)
class DocResult:
    doctype: str
    site: str
    name: str
    outcome: Outcome
    writes: int = 0
    direction: str | None = None
    detail: str = ""


class SyncFailed(ErpSyncError):
    """A document could not be synced now; the queue will retry it."""

    def __init__(self, message: str, *, code: ErrorCode, retry_after: float | None = None,
                 fix: str | None = None) -> None:
        super().__init__(message, code=code, fix=fix)
        self.retry_after = retry_after


@dataclass(slots=True)
class Fetched:
    site: str
    doc: dict[str, Any] | None
    canonical: dict[str, Any] = field(default_factory=dict)
    content_hash: str = ""

    @property
    def modified(self) -> str | None:
        return self.doc.get("modified") if self.doc else None

    @property
    def name(self) -> str | None:
        return self.doc.get("name") if self.doc else None


def missing_link_fix(missing: Any, target_site: str) -> str:
    """ERP003 for a link: the cause is a linked document not yet synced, not a field mapping."""
    return (f"A linked document ({missing}) is not on {target_site} yet: sync its doctype first (it must be in "
            "sync.doctypes, listed before this one, e.g. `erpsync-tui sync --doctype <that doctype>`), then "
            "`erpsync-tui retry --code ERP003`.")


def unpaired_link_fix(links: Any, target_site: str) -> str:
    """ERP003 for a linked document that was synced but is still not paired (the matching rules could not decide)."""
    return (f"A linked document ({links}) is not paired with a document on {target_site}: its sync left it "
            "unpaired — usually ambiguous (ERP009: it matches several documents). `erpsync-tui match` names the "
            "candidates; merge or rename the duplicates on the site, then `erpsync-tui retry --code ERP003`.")


def is_site_outage(exc: BaseException) -> bool:
    """The site refused us, not this document (circuit open, rate limited, key refused — 401 — or a role
    missing on the doctype — 403): the item waits with its attempts kept; dead-lettering it would not help."""
    return isinstance(exc, CircuitOpen | RateLimited | AuthenticationFailed | PermissionDenied)


def _hash_of(record: RecordView, site: str) -> str | None:
    side = record.sides.get(site)
    return side.content_hash if side else None


def _side(fetched: Fetched) -> Side:
    return Side(fetched.site, fetched.name or "", fetched.content_hash, fetched.modified)


def _differing(fa: Fetched, fb: Fetched) -> list[str]:
    keys = fa.canonical.keys() | fb.canonical.keys()
    return sorted(k for k in keys if fa.canonical.get(k) != fb.canonical.get(k))


def failure_code(exc: BaseException) -> tuple[str, float | None]:
    """The taxonomy code of any failure, and how long to wait before retrying if the site said so."""
    if isinstance(exc, CircuitOpen):
        return str(exc.code), max(0.0, (exc.retry_at or 0.0) - time.monotonic())
    if isinstance(exc, ConnectorError):
        return str(exc.code), getattr(exc, "retry_after", None)
    if isinstance(exc, SyncFailed):
        return str(exc.code), exc.retry_after
    if isinstance(exc, ErpSyncError):
        return str(exc.code), None
    return str(ErrorCode.QUEUE), None

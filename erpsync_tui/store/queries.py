"""Read queries for the console and the CLI; each is served by an index declared in `models.py`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from erpsync_tui.store import counts as status_counts
from erpsync_tui.store.models import (
    Conflict,
    ConflictStatus,
    EngineLease,
    HealthResult,
    QueueItem,
    QueueStatus,
    RecordStatus,
    SyncLog,
    utcnow,
)

if TYPE_CHECKING:
    from erpsync_tui.store.control import EngineStatus


@dataclass(frozen=True, slots=True)
class QueueDepth:
    by_status: dict[str, int]
    oldest_pending_age: timedelta | None

    @property
    def backlog(self) -> int:
        return self.by_status.get(QueueStatus.PENDING, 0) + self.by_status.get(QueueStatus.FAILED, 0)


def queue_depth(session: Session, now: datetime | None = None) -> QueueDepth:
    counts = {status.value: 0 for status in QueueStatus}
    counts.update(status_counts.counts(session, "queue_item"))  # kept by triggers: no scan of the queue
    oldest = session.exec(
        select(func.min(QueueItem.created_at)).where(QueueItem.status == QueueStatus.PENDING)
    ).one()
    age = (now or utcnow()) - oldest if oldest is not None else None
    return QueueDepth(counts, age)


def log_tail(
    session: Session,
    *,
    limit: int = 200,
    before_id: int | None = None,
    after_id: int | None = None,
    levels: Sequence[str] | None = None,
) -> list[SyncLog]:
    """The newest `limit` log rows (optionally only newer than `after_id`), newest last."""
    query = select(SyncLog)
    if levels:
        query = query.where(col(SyncLog.level).in_(list(levels)))
    if after_id is not None:
        query = query.where(col(SyncLog.id) > after_id)
    if before_id is not None:
        query = query.where(col(SyncLog.id) < before_id)
    rows = session.exec(query.order_by(col(SyncLog.id).desc()).limit(limit)).all()
    return list(reversed(rows))


def open_conflicts(session: Session, limit: int = 500) -> list[Conflict]:
    query = select(Conflict).where(Conflict.status == ConflictStatus.OPEN).order_by(col(Conflict.id)).limit(limit)
    return list(session.exec(query).all())


def open_conflict_count(session: Session) -> int:
    return int(session.exec(select(func.count()).where(Conflict.status == ConflictStatus.OPEN)).one())


PROBLEM_STATUSES: tuple[str, ...] = (QueueStatus.FAILED, QueueStatus.DEAD)


@dataclass(frozen=True, slots=True)
class QueueFilter:
    """Which queue items: the one WHERE clause behind the console's queue, `queue`, `retry` and `discard`."""

    statuses: tuple[str, ...] = PROBLEM_STATUSES
    doctype: str | None = None
    site: str | None = None
    error_code: str | None = None
    older_than_seconds: float | None = None  # created longer ago than this
    ids: tuple[int, ...] | None = None
    name: str | None = None  # part of the document name, case as typed (the console's `name:` filter)

    def where(self, query: Any, now: datetime | None = None) -> Any:
        if self.statuses:
            query = query.where(col(QueueItem.status).in_(list(self.statuses)))
        if self.ids is not None:
            query = query.where(col(QueueItem.id).in_(list(self.ids)))
        for value, column in ((self.doctype, QueueItem.doctype), (self.site, QueueItem.site),
                              (self.error_code, QueueItem.error_code)):
            if value:
                query = query.where(column == value)
        if self.name:
            query = query.where(col(QueueItem.name).contains(self.name, autoescape=True))
        if self.older_than_seconds is not None:
            cutoff = (now or utcnow()) - timedelta(seconds=self.older_than_seconds)
            query = query.where(col(QueueItem.created_at) < cutoff)
        return query

    def as_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"statuses": list(self.statuses)}
        for key in ("doctype", "site", "error_code", "older_than_seconds", "name"):
            if getattr(self, key) is not None:
                params[key] = getattr(self, key)
        if self.ids is not None:
            params["ids"] = list(self.ids)
        return params

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> QueueFilter:
        ids = params.get("ids")
        older = params.get("older_than_seconds")
        return cls(statuses=tuple(params.get("statuses") or PROBLEM_STATUSES), doctype=params.get("doctype") or None,
                   site=params.get("site") or None, error_code=params.get("error_code") or None,
                   older_than_seconds=float(older) if older is not None else None,
                   ids=tuple(int(i) for i in ids) if ids is not None else None, name=params.get("name") or None)

    def describe(self) -> str:
        parts = [f"status:{','.join(self.statuses)}"]
        parts += [f"{k}:{v}" for k, v in (("doctype", self.doctype), ("site", self.site), ("code", self.error_code),
                                          ("name", self.name)) if v]
        if self.older_than_seconds is not None:
            parts.append(f"older-than:{self.older_than_seconds:g}s")
        if self.ids is not None:
            parts.append("id:" + ",".join(map(str, self.ids)))
        return " ".join(parts)


def queue_items(
    session: Session,
    statuses: Sequence[str] = PROBLEM_STATUSES,
    *,
    doctype: str | None = None,
    site: str | None = None,
    error_code: str | None = None,
    limit: int = 500,
    flt: QueueFilter | None = None,
) -> list[QueueItem]:
    flt = flt or QueueFilter(tuple(statuses), doctype, site, error_code)
    query = flt.where(select(QueueItem))
    return list(session.exec(query.order_by(col(QueueItem.id).desc()).limit(limit)).all())


def queue_item_ids(session: Session, flt: QueueFilter) -> list[int]:
    return [int(i) for i in session.exec(flt.where(select(QueueItem.id)).order_by(col(QueueItem.id))).all()]


def health_results(session: Session) -> list[HealthResult]:
    """Every check's latest result, failing ones first."""
    rank = {"fail": 0, "warn": 1, "ok": 2}
    rows = session.exec(select(HealthResult)).all()
    return sorted(rows, key=lambda r: (rank.get(r.status, 3), r.check, r.target))


def engine_lease(session: Session) -> EngineLease | None:
    return session.get(EngineLease, "engine")


def echo_count(status: EngineStatus) -> int | None:
    """Webhooks the running engine settled as echoes of its own writes since it started (each logged at DEBUG
    only, so the dashboard counts them instead); None while no engine runs or one that does not report them.

    From the engine's lease (`control.engine_status`, which the dashboard reads anyway): no query of its own.
    """
    if status.mode == "stopped":
        return None
    value = status.info.get("echoes_skipped")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def record_counts(session: Session) -> dict[str, int]:
    counts = status_counts.counts(session, "sync_record")  # kept by triggers: no scan of 1M records
    counts["tracked"] = sum(counts.values())
    counts.setdefault(RecordStatus.SYNCED, 0)
    return counts

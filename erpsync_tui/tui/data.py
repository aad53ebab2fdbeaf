"""Every database read the console makes, as plain functions over a `Database` (run in worker threads).

Each query is served by an index declared in `store/models.py`; the dashboard's refresh is the handful of
queries in `load_dashboard`, measured by `bench/bench_console.py`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import col, select

from erpsync_tui.store import queries
from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import Conflict, ConflictStatus, HealthResult, QueueItem, QueueStatus, SyncLog

LEVELS = ("INFO", "WARNING", "ERROR")
DASHBOARD_LOG_LINES = 200
QUEUE_PAGE = 500
LOG_PAGE = 300


@dataclass(frozen=True, slots=True)
class DashboardData:
    status: EngineStatus
    depth: queries.QueueDepth
    new_logs: list[SyncLog]
    open_conflicts: int
    health: list[HealthResult]


def load_dashboard(db: Database, *, now: datetime, after_log_id: int | None) -> DashboardData:
    """One dashboard refresh: engine lease, queue depth + oldest pending, new log lines, conflicts, health."""
    status = engine_status(db, now=now)
    with db.read() as session:
        depth = queries.queue_depth(session, now=now)
        logs = queries.log_tail(session, limit=DASHBOARD_LOG_LINES, after_id=after_log_id)
        conflicts = queries.open_conflict_count(session)
        health = queries.health_results(session)
    return DashboardData(status, depth, logs, conflicts, health)


# ------------------------------------------------------------------------------------------------ logs


@dataclass(frozen=True, slots=True)
class LogQuery:
    levels: frozenset[str] = frozenset(LEVELS)
    text: str = ""

    def statement_filters(self) -> list[object]:
        filters: list[object] = []
        if self.levels != frozenset(LEVELS):
            # Unknown levels (DEBUG, CRITICAL) go with their nearest toggle.
            wanted = set(self.levels)
            if "ERROR" in wanted:
                wanted.add("CRITICAL")
            if "INFO" in wanted:
                wanted.add("DEBUG")
            filters.append(col(SyncLog.level).in_(sorted(wanted)))
        if self.text:
            needle = self.text
            filters.append(
                col(SyncLog.message).contains(needle, autoescape=True)
                | col(SyncLog.name).contains(needle, autoescape=True)
                | col(SyncLog.doctype).contains(needle, autoescape=True)
                | col(SyncLog.error_code).contains(needle, autoescape=True)
            )
        return filters


def log_page(
    db: Database,
    query: LogQuery,
    *,
    before_id: int | None = None,
    after_id: int | None = None,
    limit: int = LOG_PAGE,
) -> list[SyncLog]:
    """The newest `limit` matching rows in the id window, oldest first (walks the primary key backwards)."""
    stmt = select(SyncLog)
    for condition in query.statement_filters():
        stmt = stmt.where(condition)  # type: ignore[arg-type]
    if before_id is not None:
        stmt = stmt.where(col(SyncLog.id) < before_id)
    if after_id is not None:
        stmt = stmt.where(col(SyncLog.id) > after_id)
    with db.read() as session:
        rows = list(session.exec(stmt.order_by(col(SyncLog.id).desc()).limit(limit)).all())
    rows.reverse()
    return rows


# ------------------------------------------------------------------------------------------------ queue


PROBLEM_STATUSES: tuple[str, ...] = (QueueStatus.FAILED.value, QueueStatus.DEAD.value)
DISCARDED = "discarded"  # an operator's discard (issue 15's status); shown and filtered like any state
QUEUE_STATES: tuple[str, ...] = ("pending", "in_progress", "failed", "dead", DISCARDED, "done")
STATUS_WORDS = {"retrying": "failed", "retry": "failed", "in-progress": "in_progress", "running": "in_progress",
                "problems": "failed,dead", "all": ",".join(QUEUE_STATES)}
FILTER_KEYS = {"code": "error_code", "error": "error_code", "error_code": "error_code", "dt": "doctype",
               "doctype": "doctype", "site": "site", "status": "status", "state": "status", "name": "name",
               "doc": "name"}


class FilterError(ValueError):
    """A queue filter the console refuses (unknown key or value), with what would have been accepted."""


@dataclass(frozen=True, slots=True)
class QueueFilter:
    doctype: str | None = None
    site: str | None = None
    error_code: str | None = None
    statuses: tuple[str, ...] = PROBLEM_STATUSES
    name: str | None = None  # part of a document name

    @classmethod
    def parse(cls, text: str, *, sites: Sequence[str] = ()) -> QueueFilter:
        """`code:ERP002 site:local doctype:"Sales Order" status:dead name:CUST-0001`; a bare word is a name.

        Raises FilterError naming an unknown key, status, site or code — never a filter that silently matches
        nothing because of a typo.
        """
        values: dict[str, str] = {}
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise FilterError(f"cannot read the filter: {exc}") from exc
        for word in words:
            key, sep, value = word.partition(":")
            if not sep:
                key, value = "name", word
            field_name = FILTER_KEYS.get(key.lower())
            if field_name is None:
                raise FilterError(f"unknown filter key {key!r}; keys: code: site: doctype: status: name:")
            if not value:
                raise FilterError(f"{key}: needs a value, e.g. {key}:…")
            values[field_name] = value
        statuses = _statuses(values.pop("status")) if "status" in values else PROBLEM_STATUSES
        if "error_code" in values:
            values["error_code"] = values["error_code"].upper()
            if not _is_error_code(values["error_code"]):
                raise FilterError(f"unknown error code {values['error_code']!r}; codes look like ERP002")
        if "site" in values and sites and values["site"] not in sites:
            raise FilterError(f"unknown site {values['site']!r}; sites: {', '.join(sites)}")
        return cls(statuses=statuses, **values)

    def describe(self) -> str:
        """The filter as it would be typed (what `/` shows again, and the border names)."""
        parts = [f"status:{','.join(self.statuses)}"]
        parts += [f"{k}:{_quoted(v)}" for k, v in (("doctype", self.doctype), ("site", self.site),
                                                  ("code", self.error_code), ("name", self.name)) if v]
        return " ".join(parts)

    def with_statuses(self, statuses: tuple[str, ...]) -> QueueFilter:
        return QueueFilter(self.doctype, self.site, self.error_code, statuses, self.name)

    def action_params(self) -> dict[str, object]:
        params: dict[str, object] = {"statuses": list(self.statuses)}
        for key in ("doctype", "site", "error_code", "name"):
            if getattr(self, key):
                params[key] = getattr(self, key)
        return params


def _statuses(value: str) -> tuple[str, ...]:
    wanted: list[str] = []
    for word in value.lower().split(","):
        for status in STATUS_WORDS.get(word, word).split(","):
            if status not in QUEUE_STATES:
                raise FilterError(f"unknown status {word!r}; states: {', '.join(QUEUE_STATES)}, retrying, all")
            if status not in wanted:
                wanted.append(status)
    return tuple(wanted)


def _is_error_code(code: str) -> bool:
    from erpsync_tui.errors import ErrorCode

    return code in {c.value for c in ErrorCode}


def _quoted(value: str) -> str:
    return shlex.quote(value) if any(ch.isspace() or ch in "\"'" for ch in value) else value


def queue_page(db: Database, flt: QueueFilter, limit: int = QUEUE_PAGE) -> list[QueueItem]:
    """The newest `limit` items matching the filter (name: a part of the document name, case as typed)."""
    stmt = queries.QueueFilter(flt.statuses, flt.doctype, flt.site, flt.error_code, name=flt.name).where(
        select(QueueItem))  # the one queue WHERE clause (store/queries.py)
    with db.read() as session:
        return list(session.exec(stmt.order_by(col(QueueItem.id).desc()).limit(limit)).all())


def queue_counts(db: Database) -> dict[str, int]:
    """Items per state, for the queue screen's tabs."""
    with db.read() as session:
        return dict(queries.queue_depth(session).by_status)


# ------------------------------------------------------------------------------------------------ conflicts


def conflict_list(db: Database) -> list[Conflict]:
    with db.read() as session:
        return queries.open_conflicts(session)


def open_conflict_for(db: Database, record_id: int) -> int | None:
    """The open conflict of a sync record (index on conflict.record_id), for jumping from a log line."""
    stmt = (select(Conflict.id).where(Conflict.record_id == record_id, Conflict.status == ConflictStatus.OPEN)
            .order_by(col(Conflict.id).desc()).limit(1))
    with db.read() as session:
        found = session.exec(stmt).first()
    return int(found) if found is not None else None


def queue_item(db: Database, item_id: int) -> QueueItem | None:
    with db.read() as session:
        return session.get(QueueItem, item_id)


def health_rows(db: Database) -> list[HealthResult]:
    with db.read() as session:
        return queries.health_results(session)


# ------------------------------------------------------------------------------------------------ formatting


@dataclass(slots=True)
class Throughput:
    """Items finished per refresh, from the change in the `done` count (pruning can only lower it: clamp)."""

    history: list[float] = field(default_factory=list)
    last_done: int | None = None
    size: int = 60

    def add(self, done: int) -> None:
        if self.last_done is not None:
            self.history.append(float(max(done - self.last_done, 0)))
            del self.history[: -self.size]
        self.last_done = done


def format_age(age: timedelta | None) -> str:
    if age is None:
        return "—"
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def short_time(ts: datetime | None) -> str:
    return ts.strftime("%H:%M:%S") if ts is not None else ""


def ids_of(rows: Sequence[QueueItem]) -> list[int]:
    return [int(r.id or 0) for r in rows]


@dataclass(frozen=True, slots=True)
class ConflictRow:
    id: int
    doctype: str
    names: dict[str, str]
    fields: list[str]
    created_at: datetime


def conflict_rows(db: Database, limit: int = 500) -> list[ConflictRow]:
    """The open conflicts without their document versions (those are loaded one at a time, when shown)."""
    stmt = (select(Conflict.id, Conflict.doctype, Conflict.names, Conflict.fields, Conflict.created_at)
            .where(Conflict.status == ConflictStatus.OPEN).order_by(col(Conflict.id)).limit(limit))
    with db.read() as session:
        return [ConflictRow(int(i or 0), d, dict(n or {}), list(f or []), c) for i, d, n, f, c in session.exec(stmt)]


def conflict(db: Database, conflict_id: int) -> Conflict | None:
    with db.read() as session:
        return session.get(Conflict, conflict_id)

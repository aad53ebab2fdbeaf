"""Operator actions, typed: one small class per action, carried as an `operator_action` row.

The console and the CLI build the same typed action and `submit` it; whoever holds the engine lease (or the
sender itself, in-process, when no engine runs) claims the row — exactly once, by a conditional UPDATE in
`control.claim_actions` — carries it out and writes the outcome back to the row (`finish`), where the sender
`wait`s for it. The rows stay as the audit trail: who, from which host, what, when, and the outcome.

An action no engine took within `scheduler.action_max_age_seconds` expires instead of running late.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import update
from sqlmodel import col

from erpsync_tui.store.db import Database
from erpsync_tui.store.models import ActionStatus, OperatorAction, utcnow
from erpsync_tui.store.queries import QueueFilter

FINAL = frozenset({ActionStatus.DONE, ActionStatus.FAILED, ActionStatus.EXPIRED})


@dataclass(frozen=True, slots=True)
class Action:
    """Base of every action: `kind` names it in the row, `params()` / `from_params()` carry its fields."""

    kind: ClassVar[str] = ""

    def params(self) -> dict[str, Any]:
        return {}

    @property
    def target(self) -> str:
        return "engine"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Action:
        return cls()


def _ids(params: dict[str, Any]) -> tuple[int, ...]:
    return tuple(int(i) for i in params.get("ids") or ())


def _items_target(ids: tuple[int, ...]) -> str:
    return f"queue item {ids[0]}" if len(ids) == 1 else "queue items " + ", ".join(map(str, ids))


@dataclass(frozen=True, slots=True)
class Retry(Action):
    """Failed/dead items by id: queued again with a fresh attempt budget, and tried at once."""

    kind: ClassVar[str] = "retry"
    ids: tuple[int, ...] = ()

    def params(self) -> dict[str, Any]:
        return {"ids": list(self.ids)}

    @property
    def target(self) -> str:
        return _items_target(self.ids)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Retry:
        return cls(_ids(params))


@dataclass(frozen=True, slots=True)
class RetryMatching(Action):
    """Every item a queue filter matches, at the moment the engine carries it out."""

    kind: ClassVar[str] = "retry_matching"
    filter: QueueFilter = field(default_factory=QueueFilter)

    def params(self) -> dict[str, Any]:
        return self.filter.as_params()

    @property
    def target(self) -> str:
        return f"queue {self.filter.describe()}"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> RetryMatching:
        return cls(QueueFilter.from_params(params))


@dataclass(frozen=True, slots=True)
class Discard(Action):
    """Close items without syncing them (`discarded`, not `done`): by id, or every item a filter matches."""

    kind: ClassVar[str] = "discard"
    ids: tuple[int, ...] = ()
    filter: QueueFilter | None = None

    def params(self) -> dict[str, Any]:
        if self.filter is not None:
            return {"filter": self.filter.as_params()}
        return {"ids": list(self.ids)}

    @property
    def target(self) -> str:
        return f"queue {self.filter.describe()}" if self.filter is not None else _items_target(self.ids)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Discard:
        if params.get("filter") is not None:
            return cls(filter=QueueFilter.from_params(params["filter"]))
        return cls(ids=_ids(params))


@dataclass(frozen=True, slots=True)
class Resolve(Action):
    """Write a conflict's resolution to both sites: one site's document (`take`), or the merge of `choices`."""

    kind: ClassVar[str] = "resolve"
    conflict_id: int = 0
    take: str | None = None
    choices: dict[str, Any] = field(default_factory=dict)

    def params(self) -> dict[str, Any]:
        return {"conflict_id": self.conflict_id, "take": self.take, "choices": dict(self.choices)}

    @property
    def target(self) -> str:
        return f"conflict #{self.conflict_id}"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Resolve:
        return cls(int(params["conflict_id"]), params.get("take"), dict(params.get("choices") or {}))


@dataclass(frozen=True, slots=True)
class Pause(Action):
    """Target state: paused (webhooks are still received and stored; nothing is synced until resume)."""

    kind: ClassVar[str] = "pause"


@dataclass(frozen=True, slots=True)
class Resume(Action):
    """Target state: running (the queue drains)."""

    kind: ClassVar[str] = "resume"


@dataclass(frozen=True, slots=True)
class SyncNow(Action):
    kind: ClassVar[str] = "sync_now"
    doctype: str | None = None

    def params(self) -> dict[str, Any]:
        return {"doctype": self.doctype}

    @property
    def target(self) -> str:
        return self.doctype or "all doctypes"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SyncNow:
        return cls(params.get("doctype") or None)


@dataclass(frozen=True, slots=True)
class RequeueStuck(Action):
    kind: ClassVar[str] = "requeue_stuck"

    @property
    def target(self) -> str:
        return "queue"


@dataclass(frozen=True, slots=True)
class ReconcileApply(Action):
    """Sync every document that differs between the sites, through the engine, under each doctype's policy."""

    kind: ClassVar[str] = "reconcile_apply"
    doctypes: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        return {"doctypes": list(self.doctypes)}

    @property
    def target(self) -> str:
        return ", ".join(self.doctypes) or "all doctypes"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ReconcileApply:
        return cls(tuple(params.get("doctypes") or ()))


KINDS: dict[str, type[Action]] = {
    cls.kind: cls
    for cls in (Retry, RetryMatching, Discard, Resolve, Pause, Resume, SyncNow, RequeueStuck, ReconcileApply)
}
ALIASES = {"retry_all": "retry_matching"}  # the name earlier consoles wrote


def parse(kind: str, params: dict[str, Any] | None) -> Action:
    """The typed action of a row (or of a console's request); ValueError for an unknown kind or bad params."""
    kind = ALIASES.get(kind, kind)
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown action {kind!r}; one of {', '.join(sorted(KINDS))}")
    try:
        return cls.from_params(dict(params or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"bad parameters for {kind}: {exc}") from None


def of_row(row: OperatorAction) -> Action:
    return parse(row.action, row.params)


def submit(db: Database, action: Action, *, actor: str, host: str) -> int:
    """Write the row (pending); returns its id, by which the outcome is awaited and audited."""
    with db.write() as session:
        row = OperatorAction(actor=actor, host=host, action=action.kind, target=action.target,
                             params=action.params())
        session.add(row)
        session.flush()
        return int(row.id or 0)


def wait(db: Database, action_id: int, timeout: float, *, poll: float = 0.1) -> OperatorAction | None:
    """The row once its outcome is final (done, failed, expired), or its latest state after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        with db.read() as session:  # not control.action_row: control imports this module (no import loop)
            row = session.get(OperatorAction, action_id)
        if row is None or row.status in FINAL or time.monotonic() >= deadline:
            return row
        time.sleep(poll)


def note(db: Database, action_id: int, text: str) -> None:
    """An intermediate outcome of a running action (e.g. "queued as item 12; attempt 1 failed: …")."""
    from erpsync_tui.secrets import redact

    with db.write() as session:
        row = session.get(OperatorAction, action_id)
        if row is not None and row.status not in FINAL:
            row.status, row.result = ActionStatus.RUNNING, redact(text)[:2000]
            session.add(row)


def expire_old(db: Database, max_age_seconds: float, *, now: datetime | None = None) -> int:
    """Pending actions older than `max_age_seconds` become `expired`: an action is never replayed late."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=max_age_seconds)
    with db.write() as session:
        result = session.execute(
            update(OperatorAction)
            .where(OperatorAction.status == ActionStatus.PENDING, col(OperatorAction.processed_by).is_(None),
                   col(OperatorAction.created_at) < cutoff)
            .values(status=ActionStatus.EXPIRED, processed_at=now, processed_by="expired",
                    result=f"expired: no engine took it within {max_age_seconds:g} s "
                           "(scheduler.action_max_age_seconds); send it again if it is still wanted")
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def recent(db: Database, limit: int = 50) -> list[OperatorAction]:
    """The audit trail, newest first."""
    from sqlmodel import select

    with db.read() as session:
        rows = session.exec(select(OperatorAction).order_by(col(OperatorAction.id).desc()).limit(limit)).all()
    return list(rows)


def describe_pending(row: OperatorAction | None) -> str:
    """What a sender that stopped waiting should say."""
    if row is None:
        return "the action row is gone"
    if row.status == ActionStatus.PENDING:
        return (f"action #{row.id} ({row.action}) is still pending: no engine has taken it yet "
                "(is `erpsync-tui serve` running? `erpsync-tui actions` shows it)")
    return f"action #{row.id} ({row.action}) is still running: {row.result or 'no outcome yet'}"

"""The durable work queue: enqueue with coalescing, lease-based claims, backoff, dead letter.

Claims are a conditional UPDATE (… WHERE id IN (…) AND status IN ('pending','failed') RETURNING id):
whoever's UPDATE matches a row owns it, so the claim holds with many workers on SQLite and on PostgreSQL
alike, without SQLite-only locking. On PostgreSQL the candidate rows are read FOR UPDATE SKIP LOCKED, so
workers on many hosts claiming at once take different items rather than waiting on each other's.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, insert, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from erpsync_tui.secrets import redact
from erpsync_tui.store.db import Database
from erpsync_tui.store.many import FirstEach, Many, ManyReturning
from erpsync_tui.store.models import QueueItem, QueueKind, QueueStatus, utcnow

CLAIMABLE = (QueueStatus.PENDING, QueueStatus.FAILED)


def dedupe_key(kind: str, site: str | None, doctype: str | None, name: str | None) -> str:
    return f"{kind}|{site or ''}|{doctype or ''}|{name or ''}"


def enqueue(
    session: Session,
    *,
    kind: str = QueueKind.SYNC,
    site: str | None = None,
    doctype: str | None = None,
    name: str | None = None,
    payload: dict[str, Any] | None = None,
    max_attempts: int = 5,
    coalesce: bool = True,
    now: datetime | None = None,
) -> QueueItem:
    """Add work; a pending item for the same document absorbs the new event instead (one sync covers both).

    Returns the item as an ORM object of `session` (callers adjust it, e.g. to schedule a retry)."""
    work = NewWork(kind, site, doctype, name, payload or {}, now or utcnow())
    session.flush()  # the statements below run on the session's connection, after its pending changes
    [stored] = enqueue_many(session.connection(), [work], max_attempts=max_attempts, coalesce=coalesce)
    # populate_existing: the row may already be in this session's identity map with the values before the UPDATE.
    item = session.get(QueueItem, stored.id, populate_existing=True)
    assert item is not None
    return item


@dataclass(frozen=True, slots=True)
class NewWork:
    """One event to store: what `enqueue` takes, for many at once."""

    kind: str
    site: str | None
    doctype: str | None
    name: str | None
    payload: dict[str, Any]
    at: datetime  # when it arrived: the new item's created/updated/due time, or the absorbing item's updated_at

    @property
    def key(self) -> str:
        return dedupe_key(self.kind, self.site, self.doctype, self.name)


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    coalesced: bool  # True: an already pending item for the same document absorbed this event


@dataclass(slots=True)
class _Target:
    """The row an event lands in: an existing pending item (id known) or a new one (id after INSERT)."""

    id: int | None
    payload: dict[str, Any]
    coalesced: int
    updated_at: datetime | None = None
    first: NewWork | None = None  # set for new rows
    touched: bool = field(default=False)


def enqueue_many(
    connection: Connection, works: Sequence[NewWork], *, max_attempts: int, coalesce: bool = True
) -> list[Stored]:
    """Store `works` in order inside the caller's transaction, exactly as `enqueue` one by one would; one Stored each.

    The only queue insert (`enqueue` and the webhook receiver's group commit both come here). Prebuilt statements
    run on the DBAPI cursor (store/many.py): one indexed lookup per distinct document, one INSERT … RETURNING per
    new row, one executemany UPDATE — building ORM objects per event cost ~1 ms of CPU each (measured), which
    would cap the receiver below 1,000 accepts/s.
    """
    targets = _pending_targets(connection, {w.key for w in works}) if coalesce else {}
    placements: list[tuple[_Target, bool]] = []
    new: list[_Target] = []
    for work in works:
        target = targets.get(work.key) if coalesce else None
        if target is None:
            target = _Target(None, work.payload, 0, work.at, first=work)
            if coalesce:
                targets[work.key] = target
            new.append(target)
            placements.append((target, False))
            continue
        target.coalesced += 1
        target.payload = {**target.payload, **work.payload}
        target.updated_at = work.at
        target.touched = True
        placements.append((target, True))
    _insert(connection, new, max_attempts)
    _update(connection, [t for t in targets.values() if t.first is None and t.touched])
    return [Stored(id=target.id, coalesced=coalesced) for target, coalesced in placements]  # type: ignore[arg-type]


# Prebuilt once: building and caching a statement per batch cost more than SQLite's own work (measured).
_TABLE = QueueItem.__table__  # type: ignore[attr-defined]
_FIND_PENDING = FirstEach(
    sa_select(_TABLE.c.id, _TABLE.c.payload, _TABLE.c.coalesced)
    .where(_TABLE.c.status == QueueStatus.PENDING.value)
    .where(_TABLE.c.dedupe_key == bindparam("key"))
    .order_by(_TABLE.c.id)
    .limit(1)
)
_INSERT = ManyReturning(insert(_TABLE).returning(_TABLE.c.id))
_UPDATE = Many(
    update(_TABLE)
    .where(_TABLE.c.id == bindparam("target_id"))
    .values(coalesced=bindparam("new_coalesced"), payload=bindparam("new_payload", type_=_TABLE.c.payload.type),
            updated_at=bindparam("new_updated_at", type_=_TABLE.c.updated_at.type))
)


def _pending_targets(connection: Connection, keys: set[str]) -> dict[str, _Target]:
    ordered = sorted(keys)
    found = _FIND_PENDING.first_each(connection, [{"key": key} for key in ordered])
    return {key: _Target(row[0], dict(row[1] or {}), row[2]) for key, row in zip(ordered, found, strict=True)
            if row is not None}


def _insert(connection: Connection, targets: list[_Target], max_attempts: int) -> None:
    if not targets:
        return
    rows = []
    for target in targets:
        work = target.first
        assert work is not None
        rows.append({
            "kind": str(work.kind),
            "site": work.site,
            "doctype": work.doctype,
            "name": work.name,
            "payload": target.payload,
            "status": QueueStatus.PENDING.value,
            "attempts": 0,
            "max_attempts": max_attempts,
            "dedupe_key": work.key,
            "coalesced": target.coalesced,
            "next_attempt_at": work.at,
            "created_at": work.at,
            "updated_at": target.updated_at,
        })
    for target, new_id in zip(targets, _INSERT.returning(connection, rows), strict=True):
        target.id = new_id


def _update(connection: Connection, targets: list[_Target]) -> None:
    _UPDATE.execute(connection, [
        {"target_id": t.id, "new_coalesced": t.coalesced, "new_payload": t.payload, "new_updated_at": t.updated_at}
        for t in targets
    ])


def claim(
    db: Database,
    owner: str,
    *,
    limit: int = 10,
    lease_seconds: float = 60.0,
    kinds: Sequence[str] | None = None,
    ids: Sequence[int] | None = None,
    now: datetime | None = None,
) -> list[QueueItem]:
    """Take up to `limit` due items (of `ids` only, if given) for `owner` under a lease; each claim counts as an
    attempt."""
    now = now or utcnow()
    with db.write() as session:
        query = select(QueueItem.id).where(
            col(QueueItem.status).in_(CLAIMABLE), QueueItem.next_attempt_at <= now
        )
        if ids is not None:
            query = query.where(col(QueueItem.id).in_(list(ids)))
        if kinds:
            query = query.where(col(QueueItem.kind).in_(kinds))
        # SKIP LOCKED (PostgreSQL; SQLite has no row locks and admits one writer anyway): rows another worker
        # is claiming right now are passed over, so concurrent claims take different items instead of
        # queueing on the same rows and then finding them gone.
        ids = list(session.exec(query.order_by(col(QueueItem.next_attempt_at), col(QueueItem.id)).limit(limit)
                                .with_for_update(skip_locked=True)))
        if not ids:
            return []
        claimed = session.execute(
            update(QueueItem)
            .where(col(QueueItem.id).in_(ids), col(QueueItem.status).in_(CLAIMABLE))
            .values(
                status=QueueStatus.IN_PROGRESS,
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_seconds),
                attempts=QueueItem.attempts + 1,
                updated_at=now,
            )
            .returning(QueueItem.id)
        ).scalars()
        claimed_ids = list(claimed)
        if not claimed_ids:
            return []
        items = session.exec(select(QueueItem).where(col(QueueItem.id).in_(claimed_ids))).all()
        return sorted(items, key=lambda item: claimed_ids.index(item.id))


def _owned(session: Session, item_id: int, owner: str) -> QueueItem | None:
    """The item if `owner` still holds its lease (a lost lease means someone else took it over)."""
    item = session.get(QueueItem, item_id)
    if item is None or item.status != QueueStatus.IN_PROGRESS or item.lease_owner != owner:
        return None
    return item


def complete(db: Database, item_id: int, owner: str, *, now: datetime | None = None) -> bool:
    now = now or utcnow()
    with db.write() as session:
        item = _owned(session, item_id, owner)
        if item is None:
            return False
        item.status, item.finished_at, item.updated_at = QueueStatus.DONE, now, now
        item.lease_owner, item.lease_until = None, None
        item.last_error, item.error_code = None, None
        session.add(item)
        return True


def backoff_delay(attempts: int, base: float, maximum: float) -> float:
    """Exponential backoff with equal jitter: a random delay between half the ceiling and the ceiling, so a retry
    never comes back almost at once (full jitter, 0..ceiling, can) while retries of one burst still spread out."""
    ceiling = min(maximum, base * (2 ** max(0, attempts - 1)))
    return random.uniform(ceiling / 2, ceiling)


def fail(
    db: Database,
    item_id: int,
    owner: str,
    *,
    error: str,
    error_code: str,
    backoff_base: float,
    backoff_max: float,
    retry_after: float | None = None,
    count_attempt: bool = True,
    now: datetime | None = None,
) -> QueueItem | None:
    """Record a failure: schedule the next attempt with backoff, or dead-letter after max attempts.

    `count_attempt=False` (the site refused everyone: circuit open, rate limit) refunds the attempt, so an
    outage longer than the backoff schedule does not dead-letter every document that waited through it.
    """
    now = now or utcnow()
    with db.write() as session:
        item = _owned(session, item_id, owner)
        if item is None:
            return None
        item.last_error, item.error_code = redact(error)[:4000], error_code
        item.lease_owner, item.lease_until, item.updated_at = None, None, now
        if not count_attempt:
            item.attempts = max(0, item.attempts - 1)
        if item.attempts >= item.max_attempts:
            item.status, item.finished_at = QueueStatus.DEAD, now
        else:
            delay = max(backoff_delay(item.attempts, backoff_base, backoff_max), retry_after or 0.0)
            item.status, item.next_attempt_at = QueueStatus.FAILED, now + timedelta(seconds=delay)
        session.add(item)
        session.flush()
        return item


def release(db: Database, owner: str, *, now: datetime | None = None) -> int:
    """Give back every item `owner` holds (clean shutdown): they are due again at once, attempt refunded."""
    now = now or utcnow()
    with db.write() as session:
        result = session.execute(
            update(QueueItem)
            .where(QueueItem.status == QueueStatus.IN_PROGRESS, QueueItem.lease_owner == owner)
            .values(
                status=QueueStatus.PENDING,
                lease_owner=None,
                lease_until=None,
                next_attempt_at=now,
                attempts=case((QueueItem.attempts > 0, QueueItem.attempts - 1), else_=0),
                updated_at=now,
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def requeue_expired(db: Database, *, stuck_after: timedelta | None = None, now: datetime | None = None) -> int:
    """Items whose lease ran out (their worker died), or stuck longer than `stuck_after`, become due again."""
    now = now or utcnow()
    condition = QueueItem.lease_until < now
    if stuck_after is not None:
        condition = or_(condition, QueueItem.updated_at < now - stuck_after)
    with db.write() as session:
        result = session.execute(
            update(QueueItem)
            .where(QueueItem.status == QueueStatus.IN_PROGRESS, condition)
            .values(status=QueueStatus.PENDING, lease_owner=None, lease_until=None, next_attempt_at=now, updated_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def retry(
    db: Database,
    item_ids: Sequence[int] | None = None,
    *,
    statuses: Sequence[str] = (),
    now: datetime | None = None,
) -> int:
    """Operator retry: failed/dead items become pending now with a fresh attempt budget."""
    now = now or utcnow()
    wanted = list(statuses) or [QueueStatus.FAILED, QueueStatus.DEAD]
    with db.write() as session:
        query = update(QueueItem).where(col(QueueItem.status).in_(wanted))
        if item_ids is not None:
            query = query.where(col(QueueItem.id).in_(list(item_ids)))
        result = session.execute(
            query.values(
                status=QueueStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now, finished_at=None
            )
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def discard(db: Database, item_ids: Sequence[int], *, now: datetime | None = None) -> int:
    """Operator discard: a pending/failed/dead item is closed as `discarded` (not `done`: it was never synced),
    keeping its last error for the record."""
    now = now or utcnow()
    with db.write() as session:
        result = session.execute(
            update(QueueItem)
            .where(col(QueueItem.id).in_(list(item_ids)), col(QueueItem.status).in_((*CLAIMABLE, QueueStatus.DEAD)))
            .values(status=QueueStatus.DISCARDED, finished_at=now, updated_at=now)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

"""The engine lease and operator actions: how engines, daemons and consoles coordinate through the database.

One engine per database holds the lease and renews it; a holder that dies stops renewing and its lease
expires, so another engine may take over. Operator actions are rows: any console (in this process or
another) writes one, and the lease holder claims it with a conditional UPDATE, so it runs exactly once.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, update
from sqlalchemy import select as core_select
from sqlmodel import Session, col, select

from erpsync_tui.secrets import redact
from erpsync_tui.store.actions import ALIASES, KINDS
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import ActionStatus, EngineLease, Meta, OperatorAction, utcnow

# Every action kind (and the older name a console may still send); the types are in store/actions.py.
ACTIONS = frozenset({*KINDS, *ALIASES})

LEASE_NAME = "engine"
PAUSED_KEY = "engine_paused"  # the meta row holding the operator's target state, so a restart keeps a pause


class LeaseHeld(Exception):
    """Another live engine holds the lease on this database."""

    def __init__(self, lease: EngineLease) -> None:
        self.lease = lease
        super().__init__(
            f"the engine lease is held by {lease.holder} (host {lease.hostname}, pid {lease.pid}, "
            f"state {lease.state}) until {lease.expires_at:%Y-%m-%d %H:%M:%S} UTC unless renewed"
        )


@dataclass(frozen=True, slots=True)
class EngineStatus:
    mode: str  # running | paused | stopped
    holder: str | None = None
    hostname: str | None = None
    pid: int | None = None
    heartbeat_at: datetime | None = None
    expires_at: datetime | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def circuits(self) -> dict[str, str]:
        return dict(self.info.get("circuits", {}))


def acquire_lease(db: Database, holder: str, ttl: float, *, now: datetime | None = None) -> EngineLease:
    """Take the engine lease if it is free, expired or already ours; else raise LeaseHeld naming its holder.

    Atomic on every backend without relying on SQLite's one-writer transactions: an INSERT … ON CONFLICT DO
    NOTHING for a missing row (two engines inserting at once: one row, no unique violation), then an UPDATE
    whose WHERE says "ours or expired". On PostgreSQL a second UPDATE waits for the first one's row lock and
    re-checks its WHERE against the row the first one committed, so only one of many contenders matches.
    """
    now = now or utcnow()
    values = {"holder": holder, "hostname": socket.gethostname(), "pid": os.getpid(), "acquired_at": now,
              "heartbeat_at": now, "expires_at": now + timedelta(seconds=ttl), "state": "running"}
    table = EngineLease.__table__  # type: ignore[attr-defined]
    with db.write_connection() as conn:
        inserted = conn.execute(
            _dialect_insert(conn.dialect.name, table).values(name=LEASE_NAME, info={}, **values)
            .on_conflict_do_nothing(index_elements=["name"]).returning(table.c.name)
        ).first()
        taken = None
        if inserted is None:
            taken = conn.execute(
                update(table)
                .where(table.c.name == LEASE_NAME, or_(table.c.holder == holder, table.c.expires_at <= now))
                .values(**values).returning(table.c.name)
            ).first()
        lease = _lease_from_row(conn.execute(core_select(table).where(table.c.name == LEASE_NAME)).one())
        if inserted is None and taken is None:
            raise LeaseHeld(lease)
        return lease


def _dialect_insert(dialect: str, table: Any) -> Any:
    """The dialect's INSERT with ON CONFLICT (SQLite ≥ 3.24 and PostgreSQL spell it the same)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _lease_from_row(row: Any) -> EngineLease:
    return EngineLease(**row._asdict())


def holds_lease(session: Session, holder: str, *, now: datetime | None = None) -> bool:
    """Whether `holder` holds a live engine lease (read inside the caller's write transaction, as a fence).

    On PostgreSQL the row is read FOR SHARE: a contender's take-over UPDATE waits until the caller's
    transaction ends, so a fenced write never commits after its engine lost the lease. (SQLite's write
    transaction already excludes every other writer; SQLAlchemy leaves FOR SHARE out there.)
    """
    lease = session.exec(
        select(EngineLease).where(EngineLease.name == LEASE_NAME).with_for_update(read=True)
    ).first()
    return lease is not None and lease.holder == holder and lease.expires_at > (now or utcnow())


def renew_lease(db: Database, holder: str, ttl: float, info: dict[str, Any], *, now: datetime | None = None) -> bool:
    """Extend our lease; False if it was lost (expired and taken by another engine).

    One conditional UPDATE (… WHERE holder = us): read-then-write would, on PostgreSQL, extend the lease
    another engine has just taken over.
    """
    now = now or utcnow()
    table = EngineLease.__table__  # type: ignore[attr-defined]
    with db.write_connection() as conn:
        renewed = conn.execute(
            update(table).where(table.c.name == LEASE_NAME, table.c.holder == holder)
            .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl), info=info).returning(table.c.name)
        ).first()
        return renewed is not None


def set_engine_state(db: Database, holder: str, state: str) -> None:
    table = EngineLease.__table__  # type: ignore[attr-defined]
    with db.write_connection() as conn:
        conn.execute(update(table).where(table.c.name == LEASE_NAME, table.c.holder == holder).values(state=state))


def release_lease(db: Database, holder: str) -> None:
    with db.write() as session:
        session.execute(delete(EngineLease).where(EngineLease.name == LEASE_NAME, EngineLease.holder == holder))


def engine_status(db: Database, *, now: datetime | None = None) -> EngineStatus:
    now = now or utcnow()
    with db.read() as session:
        lease = session.get(EngineLease, LEASE_NAME)
    if lease is None or lease.expires_at <= now:
        return EngineStatus("stopped")
    return EngineStatus(lease.state, lease.holder, lease.hostname, lease.pid, lease.heartbeat_at, lease.expires_at,
                        dict(lease.info))


# ============================================================================================ actions


def submit_action(
    db: Database,
    action: str,
    *,
    actor: str,
    host: str,
    target: str | None = None,
    params: dict[str, Any] | None = None,
) -> int:
    """Ask the engine to do something; returns the action's id (also its audit record).

    The untyped door (extra params are kept as given); the console and the CLI use `actions.submit` with a
    typed action, which names the kind and the target the same way whoever sends it.
    """
    from erpsync_tui.store import actions

    typed = actions.parse(action, params)  # ValueError for an unknown kind or bad parameters
    with db.write() as session:
        row = OperatorAction(actor=actor, host=host, action=typed.kind, target=target or typed.target,
                             params=params or {})
        session.add(row)
        session.flush()
        return int(row.id or 0)


def claim_actions(db: Database, owner: str, limit: int = 20, *, ids: list[int] | None = None
                  ) -> list[OperatorAction]:
    """Pending actions (of `ids` only, if given) for `owner` to carry out; the conditional UPDATE makes each
    run exactly once."""
    with db.write() as session:
        query = select(OperatorAction.id).where(OperatorAction.status == ActionStatus.PENDING,
                                                col(OperatorAction.processed_by).is_(None))
        if ids is not None:
            query = query.where(col(OperatorAction.id).in_(ids))
        # PostgreSQL: pass over rows another claimer is taking
        ids = list(session.exec(query.order_by(col(OperatorAction.id)).limit(limit).with_for_update(skip_locked=True)))
        if not ids:
            return []
        claimed = session.execute(
            update(OperatorAction)
            .where(col(OperatorAction.id).in_(ids), col(OperatorAction.processed_by).is_(None))
            .values(processed_by=owner)
            .returning(OperatorAction.id)
        ).scalars()
        claimed_ids = list(claimed)
        rows = session.exec(select(OperatorAction).where(col(OperatorAction.id).in_(claimed_ids))).all()
        for row in rows:
            session.expunge(row)
        return sorted(rows, key=lambda r: r.id or 0)


def finish_action(db: Database, action_id: int, *, ok: bool, result: str) -> None:
    with db.write() as session:
        row = session.get(OperatorAction, action_id)
        if row is None or row.status in (ActionStatus.DONE, ActionStatus.FAILED, ActionStatus.EXPIRED):
            return
        row.status = ActionStatus.DONE if ok else ActionStatus.FAILED
        row.result, row.processed_at = redact(result)[:2000], utcnow()
        session.add(row)


def action_row(db: Database, action_id: int) -> OperatorAction | None:
    with db.read() as session:
        return session.get(OperatorAction, action_id)


# ============================================================================================ target state


def set_paused(db: Database, paused: bool, *, holder: str | None = None) -> None:
    """Record the operator's target state (kept across restarts) and, for a running holder, its lease state."""
    with db.write() as session:
        row = session.get(Meta, PAUSED_KEY) or Meta(key=PAUSED_KEY, value="0")
        row.value = "1" if paused else "0"
        session.add(row)
        lease = session.get(EngineLease, LEASE_NAME)
        if holder is not None and lease is not None and lease.holder == holder:
            lease.state = "paused" if paused else "running"
            session.add(lease)


def wants_paused(db: Database) -> bool:
    """Whether an operator paused the engine (and nobody resumed it): an engine that starts stays paused."""
    with db.read() as session:
        row = session.get(Meta, PAUSED_KEY)
    return row is not None and row.value == "1"

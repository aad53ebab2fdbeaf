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

from sqlalchemy import delete, update
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
    now = now or utcnow()
    with db.write() as session:  # BEGIN IMMEDIATE on SQLite: two engines cannot both see it free
        lease = session.get(EngineLease, LEASE_NAME)
        if lease is not None and lease.holder != holder and lease.expires_at > now:
            session.expunge(lease)
            raise LeaseHeld(lease)
        if lease is None:
            lease = EngineLease(name=LEASE_NAME, holder=holder)
        lease.holder, lease.hostname, lease.pid = holder, socket.gethostname(), os.getpid()
        lease.acquired_at = lease.heartbeat_at = now
        lease.expires_at = now + timedelta(seconds=ttl)
        lease.state = "running"
        session.add(lease)
        session.flush()
        session.expunge(lease)
        return lease


def holds_lease(session: Session, holder: str, *, now: datetime | None = None) -> bool:
    """Whether `holder` holds a live engine lease (read inside the caller's write transaction, as a fence)."""
    lease = session.get(EngineLease, LEASE_NAME)
    return lease is not None and lease.holder == holder and lease.expires_at > (now or utcnow())


def renew_lease(db: Database, holder: str, ttl: float, info: dict[str, Any], *, now: datetime | None = None) -> bool:
    """Extend our lease; False if it was lost (expired and taken by another engine)."""
    now = now or utcnow()
    with db.write() as session:
        lease = session.get(EngineLease, LEASE_NAME)
        if lease is None or lease.holder != holder:
            return False
        lease.heartbeat_at, lease.expires_at, lease.info = now, now + timedelta(seconds=ttl), info
        session.add(lease)
        return True


def set_engine_state(db: Database, holder: str, state: str) -> None:
    with db.write() as session:
        lease = session.get(EngineLease, LEASE_NAME)
        if lease is not None and lease.holder == holder:
            lease.state = state
            session.add(lease)


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
        ids = list(session.exec(query.order_by(col(OperatorAction.id)).limit(limit)))
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

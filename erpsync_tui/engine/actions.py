"""Carrying out operator actions (store/actions.py), with their outcomes written back to the row.

`ActionRunner` is used by the engine that holds the lease (EngineService) and, when no engine runs, by the
CLI itself (`run_here`): the same handlers either way, so the same action gives the same row and outcome
whichever process carries it out. A handler returns the outcome, raises (the action failed), or returns
LATER when the outcome lands afterwards (a resolution being retried, a sync still running): whoever
finishes that work writes it to the row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from erpsync_tui.engine.outcomes import failure_code
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.engine.worker import QueueWorker
from erpsync_tui.store import actions as act
from erpsync_tui.store import control, queries, queue
from erpsync_tui.store.models import QueueKind, QueueStatus

log = logging.getLogger("erpsync.actions")

class PausedError(Exception):
    """An action that writes to the sites was sent while an operator has the engine paused."""


LATER = object()  # the handler's outcome is written to the row later, by the work it started
RETRY_NOW_MAX = 200  # items a retry tries at once; more are queued for the engine's loop


class ActionRunner:
    """The handlers. `engine`/`worker` may be None for a runner without sites (pure queue/state actions)."""

    def __init__(
        self,
        engine: SyncEngine,
        worker: QueueWorker,
        *,
        is_paused: Callable[[], bool],
        set_paused: Callable[[bool], Awaitable[None]],
        wake: Callable[[], None],
        spawn: Callable[[Awaitable[Any]], None],
    ) -> None:
        self.engine = engine
        self.db = engine.db
        self.worker = worker
        self._is_paused = is_paused
        self._set_paused = set_paused
        self._wake = wake
        self._spawn = spawn

    async def run(self, action_id: int, action: act.Action) -> tuple[bool, str] | None:
        """Carry out one action: (ok, outcome), or None when the outcome comes later."""
        handler = getattr(self, f"_{action.kind}")
        try:
            outcome = await handler(action_id, action)
        except Exception as exc:  # an operator's bad request must not stop the engine
            code, _ = failure_code(exc)
            return False, f"failed: {code} {exc}"
        return None if outcome is LATER else (True, str(outcome))

    # ------------------------------------------------------------------------------ engine state

    async def _pause(self, _id: int, _action: act.Pause) -> str:
        await self._set_paused(True)
        return "paused: webhooks are still received and stored; nothing syncs until resume"

    async def _resume(self, _id: int, _action: act.Resume) -> str:
        await self._set_paused(False)
        self._wake()
        with self.db.read() as session:
            backlog = queries.queue_depth(session).backlog
        return f"running: {backlog} waiting items drain now"

    # ------------------------------------------------------------------------------ queue

    async def _retry(self, _id: int, action: act.Retry) -> str:
        count = await asyncio.to_thread(queue.retry, self.db, list(action.ids))
        return await self._try_now(list(action.ids), count)

    async def _retry_matching(self, _id: int, action: act.RetryMatching) -> str:
        flt = action.filter
        statuses = [s for s in flt.statuses if s in (QueueStatus.FAILED, QueueStatus.DEAD)] or \
            [QueueStatus.FAILED, QueueStatus.DEAD]
        ids = await asyncio.to_thread(self._matching, flt)
        count = await asyncio.to_thread(lambda: queue.retry(self.db, ids, statuses=statuses)) if ids else 0
        return await self._try_now(ids, count)

    def _matching(self, flt: queries.QueueFilter) -> list[int]:
        with self.db.read() as session:
            return queries.queue_item_ids(session, flt)

    async def _try_now(self, ids: list[int], count: int) -> str:
        """Requeued items are tried at once (unless paused), so the outcome says whether they synced."""
        if count == 0:
            return "retried 0: no failed or dead item matched"
        if self._is_paused():
            return f"retried {count}: queued (the engine is paused; they sync after resume)"
        now_ids = ids[:RETRY_NOW_MAX]
        items = await asyncio.to_thread(queue.claim, self.db, self.worker.owner, limit=len(now_ids),
                                        lease_seconds=self.worker.lease_seconds, ids=now_ids)
        semaphore = asyncio.Semaphore(self.engine.config.sync.concurrency)

        async def one(item: Any) -> str:
            async with semaphore:
                return await self.worker.process(item)

        statuses = await asyncio.gather(*(one(item) for item in items))
        synced = sum(1 for s in statuses if s == QueueStatus.DONE)
        failed = len(statuses) - synced
        parts = [f"{synced} synced"]
        if failed:
            parts.append(f"{failed} failed ({await asyncio.to_thread(self._first_error, [i.id for i in items])})")
        rest = count - len(items)
        if rest > 0:
            parts.append(f"{rest} queued")
        self._wake()
        return f"retried {count}: " + ", ".join(parts)

    def _first_error(self, ids: list[int | None]) -> str:
        from sqlmodel import col, select

        from erpsync_tui.store.models import QueueItem

        with self.db.read() as session:
            item = session.exec(select(QueueItem).where(col(QueueItem.id).in_([i for i in ids if i]),
                                                        col(QueueItem.status).in_([QueueStatus.FAILED,
                                                                                   QueueStatus.DEAD]))).first()
        return (item.last_error or item.error_code or "?")[:300] if item else "?"

    async def _discard(self, _id: int, action: act.Discard) -> str:
        ids = list(action.ids) if action.filter is None else await asyncio.to_thread(self._matching, action.filter)
        count = await asyncio.to_thread(queue.discard, self.db, ids) if ids else 0
        return f"discarded {count}" + ("" if count else ": no pending, failed or dead item matched")

    async def _requeue_stuck(self, _id: int, _action: act.RequeueStuck) -> str:
        stuck = timedelta(minutes=self.engine.config.alerts.stuck_item_minutes)
        count = await asyncio.to_thread(queue.requeue_expired, self.db, stuck_after=stuck)
        self._wake()
        return f"requeued {count} stuck items"

    # ------------------------------------------------------------------------------ sites

    async def _resolve(self, action_id: int, action: act.Resolve) -> object:
        """Queued (durable: retried like any write if a site fails), then tried at once; the queue item
        carries the action's id, so whoever finishes it — now or at a later retry — writes the outcome."""
        record_id = await asyncio.to_thread(self._start_resolving, action.conflict_id)
        row = control.action_row(self.db, action_id)
        actor = f"{row.actor}@{row.host}" if row is not None else "operator"
        payload = {"record_id": record_id, "take": action.take, "choices": dict(action.choices), "actor": actor,
                   "conflict_id": action.conflict_id, "action_id": action_id}
        item_id = await asyncio.to_thread(self._enqueue_resolution, payload)
        await asyncio.to_thread(act.note, self.db, action_id, f"conflict #{action.conflict_id}: resolution queued "
                                f"as item {item_id}")
        if not self._is_paused():
            items = await asyncio.to_thread(queue.claim, self.db, self.worker.owner, limit=1,
                                            lease_seconds=self.worker.lease_seconds, ids=[item_id])
            for item in items:
                await self.worker.process(item)
        return LATER

    def _enqueue_resolution(self, payload: dict[str, Any]) -> int:
        with self.db.write() as session:
            item = queue.enqueue(session, kind=QueueKind.RESOLVE, payload=payload, coalesce=False,
                                 max_attempts=self.engine.config.sync.retry.max_attempts)
            return int(item.id or 0)

    def _start_resolving(self, conflict_id: int) -> int:
        from erpsync_tui.store.models import Conflict, ConflictStatus

        with self.db.write() as session:
            conflict = session.get(Conflict, conflict_id)
            if conflict is None or conflict.status not in (ConflictStatus.OPEN, ConflictStatus.RESOLVING):
                raise ValueError(f"conflict #{conflict_id} is not open")
            conflict.status = ConflictStatus.RESOLVING
            session.add(conflict)
            return int(conflict.record_id or 0)

    async def _sync_now(self, action_id: int, action: act.SyncNow) -> object:
        from erpsync_tui.engine.bulk import full_sync

        doctypes = [action.doctype] if action.doctype else None
        if self._is_paused():
            raise PausedError("the engine is paused: nothing is written until `erpsync-tui resume`")

        async def run() -> None:
            try:
                summary = await full_sync(self.engine, doctypes=doctypes)
            except Exception as exc:
                code, _ = failure_code(exc)
                await asyncio.to_thread(control.finish_action, self.db, action_id, ok=False,
                                        result=f"failed: {code} {exc}")
                return
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "nothing to do"
            await asyncio.to_thread(control.finish_action, self.db, action_id, ok=summary.failed == 0,
                                    result=f"synced {summary.processed} documents: {outcomes}; {summary.writes} "
                                           f"writes, {summary.failed} failed")

        await asyncio.to_thread(act.note, self.db, action_id,
                                f"sync running for {', '.join(doctypes or self.engine.config.sync.doctypes)}")
        self._spawn(run())
        return LATER

    async def _reconcile_apply(self, _id: int, action: act.ReconcileApply) -> str:
        from erpsync_tui.engine.reconcile import apply_differences

        doctypes = list(action.doctypes) or list(self.engine.config.sync.doctypes)
        if self._is_paused():
            raise PausedError("the engine is paused: nothing is written until `erpsync-tui resume`")
        result = await apply_differences(self.engine, doctypes)
        return result.describe()

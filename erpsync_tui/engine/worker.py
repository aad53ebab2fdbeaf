"""Queue workers: claim due items under a lease, sync them, and record success, retry or dead letter."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from erpsync_tui.connectors.base import AuthenticationFailed, PermissionDenied
from erpsync_tui.engine.outcomes import failure_code, is_site_outage
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.metrics import Metrics
from erpsync_tui.store import queue
from erpsync_tui.store.actions import note
from erpsync_tui.store.control import finish_action
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import QueueItem, QueueKind, QueueStatus

log = logging.getLogger("erpsync.worker")


def worker_id(prefix: str = "engine") -> str:
    return f"{prefix}:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class DrainResult:
    done: int = 0
    failed: int = 0
    dead: int = 0

    @property
    def handled(self) -> int:
        return self.done + self.failed + self.dead


def resolve_outcome(outcome: str, writes: int, pair: tuple[str, str]) -> str:
    """What a finished resolution tells the operator ("resolution written to cloud and local")."""
    where = {0: "nothing needed writing (both sites already agree)", 1: "written to one site",
             2: f"written to {pair[0]} and {pair[1]}"}.get(writes, f"{writes} writes")
    return f"resolution {where}" if outcome == "resolved" else f"resolution {outcome}: {where}"


class QueueWorker:
    def __init__(
        self,
        engine: SyncEngine,
        *,
        owner: str | None = None,
        lease_seconds: float = 120.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.owner = owner or worker_id()
        self.lease_seconds = lease_seconds
        self.metrics = metrics

    async def run_once(self, limit: int = 50) -> DrainResult:
        """Claim up to `limit` due items and process them concurrently (bounded by sync.concurrency)."""
        items = await asyncio.to_thread(
            queue.claim, self.engine.db, self.owner, limit=limit, lease_seconds=self.lease_seconds
        )
        result = DrainResult()
        semaphore = asyncio.Semaphore(self.engine.config.sync.concurrency)

        async def one(item: QueueItem) -> None:
            async with semaphore:
                status = await self.process(item)
            if status == QueueStatus.DONE:
                result.done += 1
            elif status == QueueStatus.DEAD:
                result.dead += 1
            else:
                result.failed += 1

        await asyncio.gather(*(one(item) for item in items))
        return result

    async def drain(self, *, max_rounds: int = 100) -> DrainResult:
        """Process due items until none are due (items backing off for later are left for later)."""
        total = DrainResult()
        for _ in range(max_rounds):
            batch = await self.run_once()
            if batch.handled == 0:
                break
            total.done += batch.done
            total.failed += batch.failed
            total.dead += batch.dead
        return total

    async def process(self, item: QueueItem) -> str:
        started = time.perf_counter()
        try:
            outcome = await self._execute(item)
        except Exception as exc:
            if self.metrics is not None:
                self.metrics.failed(failure_code(exc)[0])
            return await asyncio.to_thread(self._record_failure, item, exc)
        completed = await asyncio.to_thread(queue.complete, self.engine.db, int(item.id or 0), self.owner)
        if completed:
            await asyncio.to_thread(self._report_to_action, item, True, outcome)
        if self.metrics is not None:
            self.metrics.observe_sync(outcome, time.perf_counter() - started)
        return QueueStatus.DONE

    async def _execute(self, item: QueueItem) -> str:
        """Carry the item out; the outcome (created, updated, skipped, …) names what happened."""
        if item.kind in (QueueKind.SYNC, QueueKind.WEBHOOK, QueueKind.DELETE):
            if not (item.site and item.doctype and item.name):
                raise ValueError(f"queue item {item.id} lacks site/doctype/name")
            if item.kind == QueueKind.WEBHOOK:
                payload = item.payload or {}
                known = await self.engine.skip_known_version(item.doctype, item.site, item.name,
                                                             modified=payload.get("modified"),
                                                             event=payload.get("event"))
                if known is not None:
                    return str(known.outcome)
            return str((await self.engine.sync_document(item.doctype, item.site, item.name)).outcome)
        if item.kind == QueueKind.RESOLVE:
            payload = item.payload
            # JSON has no tuples: an edited value arrives as ["value", v].
            choices = {k: tuple(v) if isinstance(v, list) else v for k, v in (payload.get("choices") or {}).items()}
            result = await self.engine.resolve(int(payload["record_id"]), choices,
                                               actor=str(payload.get("actor", "operator")), take=payload.get("take"))
            return resolve_outcome(str(result.outcome), result.writes, self.engine.pair)
        raise ValueError(f"unknown queue item kind {item.kind!r}")

    def _report_to_action(self, item: QueueItem, ok: bool, outcome: str, *, final: bool = True) -> None:
        """An item made by an operator action (a resolution) writes its outcome to the action's row."""
        action_id = (item.payload or {}).get("action_id")
        if not action_id:
            return
        if final:
            finish_action(self.engine.db, int(action_id), ok=ok, result=outcome if ok else f"failed: {outcome}")
        else:
            note(self.engine.db, int(action_id), f"{outcome}; it is retried automatically")

    def _hold_for(self, exc: Exception, retry_after: float | None) -> float | None:
        """How long an item refused by its site waits (its attempt is kept, so backoff alone would not grow):
        a 401 until the site's breaker tries again, a 403 (a role to grant) the longest backoff."""
        if retry_after is not None:
            return retry_after
        if isinstance(exc, AuthenticationFailed):
            site = self.engine.config.sites.get(exc.site)
            return site.circuit_reset_seconds if site is not None else None
        if isinstance(exc, PermissionDenied):
            return self.engine.config.sync.retry.backoff_max_seconds
        return None

    def _record_failure(self, item: QueueItem, exc: Exception) -> str:
        code, retry_after = failure_code(exc)
        retry = self.engine.config.sync.retry
        retry_after = self._hold_for(exc, retry_after)
        updated = queue.fail(
            self.engine.db, int(item.id or 0), self.owner, error=str(exc), error_code=code,
            backoff_base=retry.backoff_base_seconds, backoff_max=retry.backoff_max_seconds, retry_after=retry_after,
            count_attempt=not is_site_outage(exc),
        )
        if updated is None:
            return QueueStatus.FAILED  # the lease was lost meanwhile; the new holder records the outcome
        dead = updated.status == QueueStatus.DEAD
        message = (f"dead after {updated.attempts} attempts: {exc}" if dead
                   else f"attempt {updated.attempts}/{updated.max_attempts} failed, retry at "
                        f"{updated.next_attempt_at:%H:%M:%S}: {exc}")
        self._report_to_action(item, False, f"{code} {message}", final=dead)
        log.warning("queue item=%s code=%s %s", item.id, code, message)
        with self.engine.db.write() as session:
            add_log(session, message, level="ERROR", site=item.site, doctype=item.doctype, name=item.name,
                    outcome="dead" if dead else "failed", error_code=code, queue_item_id=item.id)
        return str(updated.status)

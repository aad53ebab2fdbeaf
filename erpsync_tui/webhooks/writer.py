"""Group commit: concurrent webhook requests share one database transaction.

SQLite commits are serialised and each costs a WAL append plus fsync bookkeeping, so committing every webhook
on its own caps the receiver at a few thousand per second. Requests instead hand their event to one writer
task and await a future; the writer takes everything that queued up while the previous batch was committing,
stores it in one transaction, and resolves each future only after that commit. A small batch is stored on the
event loop itself when the write lock is free at that instant (no wait, ever: see `_store_now`); otherwise, or
for a big batch, in a worker thread that may wait for the lock. A request is therefore still answered only
once ITS row is durable, and at low load a batch is just one event, so latency does not suffer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from erpsync_tui.store.db import Database
from erpsync_tui.store.models import QueueKind
from erpsync_tui.store.queue import NewWork, Stored, enqueue_many
from erpsync_tui.webhooks.parsing import WebhookEvent

log = logging.getLogger("erpsync.webhooks")

MAX_BATCH = 512  # bounds one transaction's duration (and so the lock hold time other writers see)
INLINE_MAX = 64  # a batch this small (~3 ms at most) may be stored on the event loop itself when the lock is free


@dataclass(frozen=True, slots=True)
class WebhookWrite:
    site: str
    event: WebhookEvent
    received_at: datetime

    def payload(self) -> dict[str, Any]:
        return {
            "event": self.event.event,
            "modified": self.event.modified,
            "received_at": self.received_at.isoformat(),
        }

    def work(self) -> NewWork:
        return NewWork(QueueKind.WEBHOOK.value, self.site, self.event.doctype, self.event.name, self.payload(),
                       self.received_at)


def enqueue_webhooks(connection: Connection, writes: Sequence[WebhookWrite], *, max_attempts: int) -> list[Stored]:
    """Store `writes` in order inside the caller's transaction (the queue's one insert); one Stored per write."""
    return enqueue_many(connection, [write.work() for write in writes], max_attempts=max_attempts)


class WriterClosed(Exception):
    """The receiver is shutting down and takes no new events."""


_Outcome = Stored | Exception


class GroupCommitWriter:
    def __init__(
        self,
        db: Database,
        *,
        max_attempts: int = 5,
        max_batch: int = MAX_BATCH,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self.max_batch = max_batch
        self.on_commit = on_commit
        self.batches = 0  # how many transactions were committed (tests and the bench read it)
        self.inline_batches = 0  # of which stored on the event loop (the lock was free)
        self._pending: list[tuple[WebhookWrite, asyncio.Future[Stored]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def alive(self) -> bool:
        return not self._closing and (self._task is None or not self._task.done())

    async def submit(self, write: WebhookWrite) -> Stored:
        """Store one event; returns once the transaction holding it has committed (raises if it failed)."""
        if self._closing:
            raise WriterClosed("the webhook receiver is shutting down")
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._ensure_running()
        self._wakeup.set()
        return await future

    def _ensure_running(self) -> None:
        # Started lazily, so the writer lives on whichever loop serves requests (uvicorn's, or a TestClient's).
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-group-commit")

    async def aclose(self) -> None:
        """Take no new events; store what is already queued; then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
                await self._commit_and_answer(batch)
            if self._closing:
                return

    async def _commit_and_answer(self, batch: list[tuple[WebhookWrite, asyncio.Future[Stored]]]) -> None:
        writes = [write for write, _ in batch]
        try:
            outcomes = self._store_now(writes) if len(writes) <= INLINE_MAX else None
            if outcomes is None:
                outcomes = await asyncio.to_thread(self._store, writes)
        except asyncio.CancelledError:  # the loop is going away: no waiter may hang on a future never resolved
            for _, future in batch:
                if not future.done():
                    future.set_exception(WriterClosed("the webhook receiver stopped while storing"))
            raise
        except Exception as exc:  # the thread itself failed to run; every waiter gets the error
            outcomes = [exc] * len(batch)
        stored = 0
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the request went away (client disconnected); its row is stored regardless
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
                stored += 1
        if stored and self.on_commit is not None:
            try:
                self.on_commit()
            except Exception:
                log.exception("webhook on_commit callback failed")

    # ------------------------------------------------------------------------------ on the loop, never waiting

    def _store_now(self, writes: Sequence[WebhookWrite]) -> list[_Outcome] | None:
        """Store the batch right here if the write lock is free this instant; None: hand it to a thread.

        Handing a batch to a thread costs more than storing it: the loop and the thread pass the GIL back
        and forth at every socket send and SQLite call (measured ~500 µs of CPU per webhook through the
        thread, ~300 µs inline). Waiting is never done here: a lock held by the engine or another process,
        or any error, sends the batch to the thread, which waits and isolates a bad event.
        """
        try:
            with self.db.try_write_now() as connection:
                if connection is None:
                    return None
                results: list[_Outcome] = list(enqueue_webhooks(connection, writes, max_attempts=self.max_attempts))
        except Exception as exc:
            log.debug("inline webhook store failed (%s); storing from a thread", type(exc).__name__)
            return None
        self.batches += 1
        self.inline_batches += 1
        return results

    # ------------------------------------------------------------------------------ worker thread

    def _store(self, writes: Sequence[WebhookWrite]) -> list[_Outcome]:
        try:
            return list(self._store_batch(writes))
        except Exception as exc:
            if len(writes) == 1:
                return [exc]
            # One bad event must not fail its neighbours: retry each in its own transaction.
            log.warning("webhook batch of %d failed (%s); storing one by one", len(writes), type(exc).__name__)
            return [self._store_alone(write) for write in writes]

    def _store_alone(self, write: WebhookWrite) -> _Outcome:
        try:
            return self._store_batch([write])[0]
        except Exception as exc:
            return exc

    def _store_batch(self, writes: Sequence[WebhookWrite]) -> list[Stored]:
        # A Core transaction (BEGIN IMMEDIATE on SQLite) behind the process's write lock, so the wait for the
        # engine's writes is a queue, not SQLite's sleeping busy handler. Commits, or rolls back on any error.
        with self.db.write_connection() as connection:
            results = enqueue_webhooks(connection, writes, max_attempts=self.max_attempts)
        self.batches += 1
        return results

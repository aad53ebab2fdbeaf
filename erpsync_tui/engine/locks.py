"""The engine's in-process locks: one per document name, one per record.

A record is reached under two names (one per site) — a webhook for one, a queued retry or a feed for the other —
so the name locks alone let two syncs of one record decide at once (both re-create a deleted side, both push).
The record lock serialises the decision. It is re-entrant within a task: a sync that follows a rename or a
lost create decides again for the same record from inside its own decision.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class TaskLock:
    """An asyncio lock the task holding it may take again (released when every `async with` has exited)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[object] | None = None
        self._depth = 0

    async def __aenter__(self) -> None:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            self._depth += 1
            return
        await self._lock.acquire()
        self._owner, self._depth = task, 1

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner = None
            self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

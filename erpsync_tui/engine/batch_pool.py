"""Full-sync batches in batch processes: more documents per second than one process's one thread of Python.

A bulk full sync is CPU-bound in the engine's process (canonical form, hashes, JSON, state rows). With
`sync.workers: N` the walk stays where it is — listing, checkpoints, the per-document locks, the per-document
path for whatever a batch hands back — and each batch's bulk part (`bulk_batch._bulk_locked`: state read, creates,
compares, the state and log transaction) runs in one of N batch processes. They open the same database
(writes queue on its writer lock, as every writer does) and their own connections to the sites, so nothing but
a batch's rows and its summary crosses a process boundary.

The processes are started once (spawned: a fresh interpreter, no inherited event loop, threads or database handles),
get the configuration and the credentials through the pool's pipe (never argv or the environment), and are told
the fence of the lease the engine runs under with every batch. A process that dies, or a pool that cannot start,
costs nothing but speed: the batch runs in the engine's process instead, and the pool is not used again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from erpsync_tui.config import AppConfig

log = logging.getLogger("erpsync.engine")


class BatchPool:
    """N batch processes that each run one bulk batch at a time for a SyncEngine.

    ("Worker" is the engine's queue coroutine, engine/worker.py; the user-facing names `sync.workers` and
    `--workers` stay, and so do the log lines operators may grep for.)
    """

    def __init__(self, config: AppConfig, db_url: str, credentials: dict[str, tuple[str, str]], processes: int,
                 *, log_level: int | None = None) -> None:
        self.processes = processes
        self._bootstrap = {
            "config": config.model_dump(mode="json"),
            "db_url": db_url,
            "credentials": credentials,
            "log_level": log_level if log_level is not None else logging.getLogger().getEffectiveLevel(),
        }
        self._pool: ProcessPoolExecutor | None = None
        self.broken = False
        self.batches = 0  # batches the processes ran (for the bench and the tests)

    @property
    def usable(self) -> bool:
        return self.processes > 0 and not self.broken

    def start(self) -> list[Future[int]]:
        """Spawn the processes now (each boots in ~1 s), not at the first batch; futures of their process ids."""
        if self._pool is not None or not self.usable:
            return []
        self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_process, initargs=(self._bootstrap,))
        # The pool spawns a process per task submitted while none is idle: one warm-up task per process.
        return [self._pool.submit(_booted) for _ in range(self.processes)]

    async def run(self, doctype: str, site: str, rows: list[dict[str, Any]], force_from: str | None,
                  fence: str | None) -> tuple[dict[str, Any], list[str]] | None:
        """(summary as a dict, names for the per-document path), or None when no process could take the batch."""
        if not self.usable:
            return None
        self.start()
        assert self._pool is not None
        try:
            future: Future[tuple[dict[str, Any], list[str]]] = self._pool.submit(
                _run_batch, doctype, site, rows, force_from, fence)
            result = await asyncio.wrap_future(future)
        except Exception as exc:  # BrokenProcessPool, a process that could not start: run it here instead
            log.warning("code=ERP010 full-sync worker processes stopped working (%s): batches run in the engine's "
                        "process from now on", exc)
            self.broken = True
            self.close()
            return None
        self.batches += 1
        return result

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
            log.info("full-sync worker processes stopped after %d batches", self.batches)


# ============================================================================================ inside a batch process

_state: dict[str, Any] = {}


def _init_process(bootstrap: dict[str, Any]) -> None:
    from erpsync_tui.connectors import site_connectors
    from erpsync_tui.engine.sync import SyncEngine
    from erpsync_tui.store import open_database

    logging.basicConfig(level=bootstrap["log_level"], format="%(levelname)s %(name)s [batch process] %(message)s")
    config = AppConfig.model_validate(bootstrap["config"])
    credentials = bootstrap["credentials"]
    connectors = site_connectors(config, {name: tuple(pair) for name, pair in credentials.items()})
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _state["loop"] = loop
    _state["engine"] = SyncEngine(config, open_database(bootstrap["db_url"]), connectors, actor="engine")


def _booted() -> int:
    time.sleep(0.05)  # held a moment, so that the next warm-up task finds this process busy and spawns another
    return os.getpid()


def _run_batch(doctype: str, site: str, rows: list[dict[str, Any]], force_from: str | None,
               fence: str | None) -> tuple[dict[str, Any], list[str]]:
    from erpsync_tui.engine.bulk_batch import _bulk_locked
    from erpsync_tui.engine.summary import SyncSummary

    engine = _state["engine"]
    engine.fence = fence
    summary = SyncSummary()
    fallback = _state["loop"].run_until_complete(
        _bulk_locked(engine, doctype, site, rows, summary, force_from=force_from, release=lambda names: None))
    return summary.as_dict(), fallback

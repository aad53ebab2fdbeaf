"""The running engine: lease, queue loop, operator actions, periodic jobs, config reload, webhook receiver.

`EngineService` is what `erpsync-tui serve` runs headless and what the console runs in-process (through
`EngineThread`, a background thread with its own event loop, so the UI never waits for the engine).
Everything it knows is in the database; stopping it gives back its queue items and its lease.

Its parts: the lease kept and waited for (lease.py), the periodic jobs (jobs.py), the operator actions
(actions.py); this module starts and stops them and runs the queue loop and the config reload.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from erpsync_tui.config import AppConfig, ConfigError, load_config
from erpsync_tui.connectors.base import Connector
from erpsync_tui.engine.jobs import ScheduledJobs
from erpsync_tui.engine.lease import LeaseKeeping
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.engine.worker import QueueWorker, worker_id
from erpsync_tui.metrics import Metrics
from erpsync_tui.store import actions, control, queue
from erpsync_tui.store.control import EngineStatus, LeaseHeld, engine_status, submit_action
from erpsync_tui.store.db import Database
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import OperatorAction

__all__ = ["EngineService", "EngineStatus", "EngineThread", "LeaseHeld", "engine_status", "submit_action"]

log = logging.getLogger("erpsync.service")

LEASE_TTL = 15.0  # seconds; renewed every LEASE_TTL / 3, so a dead holder's lease lapses within 15 s
ReceiverStarter = Callable[["EngineService"], Awaitable[Any]]


class EngineService(LeaseKeeping, ScheduledJobs):
    def __init__(
        self,
        config: AppConfig,
        db: Database,
        connectors: Mapping[str, Connector],
        *,
        config_file: Path | None = None,
        owner: str | None = None,
        start_receiver: ReceiverStarter | None = None,
        lease_ttl: float = LEASE_TTL,
    ) -> None:
        self.config = config
        self.db = db
        self.connectors = dict(connectors)
        self.config_file = config_file
        self.owner = owner or worker_id()
        self.engine = SyncEngine(config, db, self.connectors, actor=self.owner, fence=self.owner)
        self.metrics = Metrics()
        self.worker = QueueWorker(self.engine, owner=self.owner, metrics=self.metrics)
        self.lease_ttl = lease_ttl
        self.state = "stopped"
        self.receiver: Any = None
        self._start_receiver = start_receiver
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._scheduler: AsyncIOScheduler | None = None
        self._retention_runs = 0
        self._receiver_port_note = False  # the standby's "port taken" warning is logged once
        self._background: set[asyncio.Task[Any]] = set()
        self._rejection_history: collections.deque[tuple[float, dict[str, int]]] = collections.deque()
        from erpsync_tui.engine.actions import ActionRunner

        self.action_runner = ActionRunner(self.engine, self.worker, is_paused=lambda: self.paused,
                                          set_paused=self.set_paused, wake=self.wake, spawn=self._spawn)

    # ==================================================================================== lifecycle

    async def start(self, *, wait_for_lease: bool = False) -> None:
        """Take the lease (or raise LeaseHeld), then start the loops; returns once everything runs.

        With `wait_for_lease` a standby starts its webhook receiver first and keeps it running while it waits
        (active-active receiving: webhooks sent to this host are stored, and the holder — or this host, once
        it takes over — syncs them), then takes the lease the moment the holder's lease expires.
        """
        try:
            await asyncio.to_thread(control.acquire_lease, self.db, self.owner, self.lease_ttl)
        except LeaseHeld as held:
            if not wait_for_lease:
                raise
            self.state = "waiting"
            await self._try_receiver_while_waiting()
            if not await self._wait_for_lease(held):
                return  # stop() was called while waiting
            if self._stopping.is_set():  # stop() came while the winning attempt ran in its thread
                await asyncio.to_thread(control.release_lease, self.db, self.owner)
                return
        # An operator's pause outlives the engine that received it: a (re)started engine stays paused.
        paused = await asyncio.to_thread(control.wants_paused, self.db)
        self.state = "paused" if paused else "running"
        if paused:
            await asyncio.to_thread(control.set_engine_state, self.db, self.owner, "paused")
        # Only the lease holder claims queue items, so anything still in progress belongs to a predecessor
        # that died: it comes back now rather than when its item lease would have run out.
        await asyncio.to_thread(queue.requeue_expired, self.db, stuck_after=timedelta(0))
        await self._log("engine started" + (" paused (an operator paused it; `erpsync-tui resume`)" if paused else ""),
                        outcome="started")
        await self._start_receiver_once()
        self._scheduler = self._make_scheduler()
        self._scheduler.start()
        self._tasks = [asyncio.create_task(self._queue_loop(), name="queue"),
                       asyncio.create_task(self._heartbeat_loop(), name="heartbeat")]
        if self.config_file is not None:
            self._tasks.append(asyncio.create_task(self._watch_config(), name="config-watch"))

    async def _start_receiver_once(self) -> None:
        if self._start_receiver is not None and self.receiver is None:
            self.receiver = await self._start_receiver(self)
            self._adopt_receiver_port(getattr(self.receiver, "port", None))

    def _adopt_receiver_port(self, port: int | None) -> None:
        """With `webhooks.port: 0` the OS picks the port: the running config (and health checks) use that one."""
        if not port or port == self.config.webhooks.port:
            return
        webhooks = self.config.webhooks.model_copy(update={"port": port})
        self.config = self.config.model_copy(update={"webhooks": webhooks})
        self.engine.config = self.config

    async def stop(self) -> None:
        """Stop taking work, let in-flight items finish briefly, give back the rest and the lease."""
        if self.state == "stopped":
            return
        self.state = "stopping"
        self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        for task in self._tasks + list(self._background):
            task.cancel()
        await asyncio.gather(*self._tasks, *self._background, return_exceptions=True)
        if self.receiver is not None:
            await self.receiver.stop()
        released = await asyncio.to_thread(queue.release, self.db, self.owner)
        await self._log(f"engine stopped; {released} in-flight items given back", outcome="stopped")
        await asyncio.to_thread(control.release_lease, self.db, self.owner)
        for connector in self.connectors.values():
            await connector.aclose()
        self.state = "stopped"
        self._stopped.set()

    async def run_until_stopped(self) -> None:
        """Return once `stop()` has finished (lease released, items given back)."""
        await self._stopped.wait()

    def wake(self) -> None:
        """New work arrived (the receiver stored an event): process the queue now, not at the next tick."""
        self._wake.set()

    @property
    def paused(self) -> bool:
        return self.state == "paused"

    # ==================================================================================== loops

    async def _queue_loop(self) -> None:
        while not self._stopping.is_set():
            handled = 0
            try:
                await self._process_actions()
                if not self.paused:
                    handled = (await self.worker.run_once()).handled
            except Exception:  # the loop must outlive any one failure; the failure is logged with its trace
                log.exception("queue loop iteration failed code=ERP010")
            if handled:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.scheduler.queue_interval_seconds)

    # ==================================================================================== operator actions

    async def _process_actions(self) -> None:
        """Expire stale actions, then carry out the pending ones (engine/actions.py); outcomes go to the rows."""
        await asyncio.to_thread(actions.expire_old, self.db, self.config.scheduler.action_max_age_seconds)
        for row in await asyncio.to_thread(control.claim_actions, self.db, self.owner):
            await self.carry_out(row)

    async def carry_out(self, row: OperatorAction) -> None:
        action_id = int(row.id or 0)
        try:
            typed = actions.of_row(row)
        except ValueError as exc:
            await asyncio.to_thread(control.finish_action, self.db, action_id, ok=False, result=f"failed: {exc}")
            return
        outcome = await self.action_runner.run(action_id, typed)
        if outcome is not None:
            ok, result = outcome
            await asyncio.to_thread(control.finish_action, self.db, action_id, ok=ok, result=result)
        shown = outcome[1] if outcome is not None else "started; its outcome is written when it lands"
        await self._log(f"operator {row.actor}@{row.host}: {typed.kind} → {shown} ({typed.target})",
                        level="INFO" if outcome is None or outcome[0] else "ERROR", outcome=f"action_{typed.kind}")

    async def set_paused(self, paused: bool) -> None:
        self.state = "paused" if paused else "running"
        await asyncio.to_thread(control.set_paused, self.db, paused, holder=self.owner)

    # ==================================================================================== config reload

    async def _watch_config(self) -> None:
        from watchfiles import awatch

        assert self.config_file is not None
        async for _changes in awatch(self.config_file, stop_event=self._stopping, debounce=300):
            await self.reload_config()

    async def reload_config(self) -> bool:
        """Re-read config.yaml; a valid edit takes effect now, an invalid one is reported and ignored."""
        assert self.config_file is not None
        try:
            new = await asyncio.to_thread(load_config, self.config_file)
        except ConfigError as exc:
            await self._log(f"config reload rejected, keeping the running configuration: {exc.render()}",
                            level="ERROR", outcome="config_rejected", code="ERP004")
            return False
        restart_needed = new.sites != self.config.sites or new.database != self.config.database
        self.config = new
        self._adopt_receiver_port(getattr(self.receiver, "port", None))
        self.engine.config = self.config
        self.engine.pair = new.pair
        self.reschedule()
        note = "; site or database changes need a restart" if restart_needed else ""
        await self._log(f"config reloaded from {self.config_file}{note}", outcome="config_reloaded")
        return True

    # ==================================================================================== helpers

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _log(self, message: str, *, level: str = "INFO", outcome: str | None = None,
                   code: str | None = None) -> None:
        getattr(log, level.lower(), log.info)("%s", message)
        await asyncio.to_thread(self._write_log, message, level, outcome, code)

    def _write_log(self, message: str, level: str, outcome: str | None, code: str | None) -> None:
        with self.db.write() as session:
            add_log(session, message, level=level, outcome=outcome, error_code=code)


class EngineThread:
    """Runs an EngineService on its own event loop in a background thread (the console's in-process mode)."""

    def __init__(self, factory: Callable[[], EngineService]) -> None:
        self._factory = factory
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.service: EngineService | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the engine; raises LeaseHeld (a `serve` already runs on this database) or its start error."""
        self._thread = threading.Thread(target=self._run, name="erpsync-engine", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("the engine did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            raise self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        try:
            self.service = self._factory()
            await self.service.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self.service.run_until_stopped()

    def stop(self, timeout: float = 15.0) -> None:
        if self._loop is None or self.service is None or self._thread is None:
            return
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.service.stop(), self._loop)
            with contextlib.suppress(Exception):
                future.result(timeout)
        self._thread.join(timeout)

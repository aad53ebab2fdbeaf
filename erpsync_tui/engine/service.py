"""The running engine: lease, queue loop, operator actions, periodic jobs, config reload, webhook receiver.

`EngineService` is what `erpsync-tui serve` runs headless and what the console runs in-process (through
`EngineThread`, a background thread with its own event loop, so the UI never waits for the engine).
Everything it knows is in the database; stopping it gives back its queue items and its lease.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.util import undefined

from erpsync_tui import __version__
from erpsync_tui.config import AppConfig, ConfigError, load_config
from erpsync_tui.connectors.base import Connector
from erpsync_tui.engine.bulk import incremental_sync
from erpsync_tui.engine.metrics import Metrics
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.engine.worker import QueueWorker, worker_id
from erpsync_tui.store import actions, control, queue, retention
from erpsync_tui.store.control import EngineStatus, LeaseHeld, engine_status, submit_action
from erpsync_tui.store.db import Database
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import OperatorAction, utcnow

__all__ = ["EngineService", "EngineStatus", "EngineThread", "LeaseHeld", "engine_status", "submit_action"]

log = logging.getLogger("erpsync.service")

LEASE_TTL = 15.0  # seconds; renewed every LEASE_TTL / 3, so a dead holder's lease lapses within 15 s
LEASE_MARGIN = 0.05  # a standby tries this long after the expiry it read (both ends' clocks are UTC)
RECEIVER_RETRY = 1.0  # a standby whose receiver port is taken (the holder on the same host) retries this often
VACUUM_EVERY = 24  # retention runs between two VACUUMs
REJECTION_WINDOW_SECONDS = 15 * 60  # health.REJECTION_WINDOW_MINUTES: refused webhooks reported over this window
ReceiverStarter = Callable[["EngineService"], Awaitable[Any]]


class EngineService:
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

    async def _try_receiver_while_waiting(self) -> None:
        """Start the receiver if its port is free; a standby on the holder's own host finds it taken (the
        holder listens there) and tries again while it waits, so it listens as soon as the holder is gone."""
        if self._start_receiver is None or self.receiver is not None:
            return
        try:
            await self._start_receiver_once()
        except OSError as exc:
            if not self._receiver_port_note:
                log.warning("standby: the webhook receiver cannot listen yet (%s); trying again while waiting "
                            "code=ERP006", exc.strerror or exc)
                self._receiver_port_note = True

    async def _wait_for_lease(self, held: LeaseHeld) -> bool:
        """Sleep until the expiry the holder last wrote, then try again; True once the lease is ours.

        Not a fixed poll: a dead holder's lease is taken within a moment of its expiry, i.e. within
        `lease_ttl_seconds` of its last renewal (a live holder renews first, and the next expiry is read).
        Expiry and "now" are both UTC wall clocks: hosts must keep their clocks in sync (NTP).
        """
        log.info("waiting for the engine lease: %s", held)
        while True:
            delay = (held.lease.expires_at - utcnow()).total_seconds() + LEASE_MARGIN
            delay = min(max(delay, LEASE_MARGIN), self.lease_ttl)  # a row from a skewed clock cannot park us
            if self._start_receiver is not None and self.receiver is None:
                delay = min(delay, RECEIVER_RETRY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return False
            await self._try_receiver_while_waiting()
            if (held.lease.expires_at - utcnow()).total_seconds() > 0:
                continue  # woken early to retry the receiver: the lease we read is still live
            try:
                lease = await asyncio.to_thread(control.acquire_lease, self.db, self.owner, self.lease_ttl)
            except LeaseHeld as again:
                held = again
                continue
            except Exception:  # the database is unreachable for a moment: keep waiting, keep receiving
                log.exception("lease attempt failed code=ERP010")
                continue
            waited = (lease.acquired_at - held.lease.heartbeat_at).total_seconds()
            log.warning("took over the engine lease from %s (host %s, pid %s) %.2f s after its last renewal",
                        held.lease.holder, held.lease.hostname, held.lease.pid, waited)
            return True

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

    async def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            circuits = {site: c.circuit_state for site, c in self.connectors.items()}
            for site, state in circuits.items():
                self.metrics.set_circuit(site, state)
            info = {"circuits": circuits, "version": __version__, "receiver": getattr(self.receiver, "url", None),
                    # What doctor reads of this engine (its environment may differ from the operator's shell).
                    "webhook_secret": self._webhook_secret_configured(),
                    "webhooks_rejected_recent": self._recent_rejections(),
                    "echoes_skipped": self.engine.echoes_skipped}
            self.metrics.set_echoes(self.engine.echoes_skipped)
            try:
                if not await asyncio.to_thread(control.renew_lease, self.db, self.owner, self.lease_ttl, info):
                    log.error("lost the engine lease code=ERP010; stopping so two engines never run at once")
                    self._spawn(self.stop())
                    return
            except Exception:
                log.exception("lease renewal failed code=ERP010")
            await asyncio.sleep(self.lease_ttl / 3)

    def _webhook_secret_configured(self) -> bool | None:
        """None without a receiver; else whether the receiver verifies with a secret. The receiver itself says so
        (the demo and tests hand it one directly); only a receiver that cannot tell is judged by the secret store."""
        if self.receiver is None:
            return None
        told = getattr(self.receiver, "secret_configured", None)
        if told is not None:
            return bool(told)
        from erpsync_tui import secrets as secret_store

        return secret_store.lookup(secret_store.WEBHOOK_REF).value is not None

    def _recent_rejections(self) -> dict[str, int]:
        """Webhooks refused per reason over the last REJECTION_WINDOW (counter deltas kept at each heartbeat)."""
        now = time.monotonic()
        totals = self.metrics.rejected_totals()
        self._rejection_history.append((now, totals))
        while self._rejection_history and now - self._rejection_history[0][0] > REJECTION_WINDOW_SECONDS:
            self._rejection_history.popleft()
        oldest = self._rejection_history[0][1]
        return {reason: n - oldest.get(reason, 0) for reason, n in totals.items() if n - oldest.get(reason, 0)}

    def _make_scheduler(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler()
        for job_id, func, seconds in self._jobs():
            if seconds > 0:
                # Catch up at once on start (whatever changed while no engine ran), then keep the interval.
                first = datetime.now(UTC) if job_id in ("incremental_sync", "health") else undefined
                scheduler.add_job(func, "interval", seconds=seconds, id=job_id, name=job_id, max_instances=1,
                                  coalesce=True, next_run_time=first)
        return scheduler

    def _tracked(self, job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A job that `stop()` can cancel and wait for (before it closes the connectors the job uses)."""

        async def run() -> None:
            task = asyncio.current_task()
            if task is not None:
                self._background.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                log.info("job %s cancelled by shutdown", getattr(job, "__name__", job))
            except Exception:  # a failing job is reported and runs again at its next interval
                log.exception("job %s failed code=ERP010", getattr(job, "__name__", job))
            finally:
                if task is not None:
                    self._background.discard(task)

        run.__name__ = getattr(job, "__name__", "job")
        return run

    def _jobs(self) -> list[tuple[str, Callable[[], Awaitable[None]], float]]:
        from erpsync_tui.engine.health.run import RECHECK_SECONDS as recheck

        s = self.config.scheduler
        return [
            ("incremental_sync", self._tracked(self._incremental_job), s.incremental_sync_interval_seconds),
            ("health", self._tracked(self._health_job), s.health_interval_seconds),
            ("health_recheck", self._tracked(self._health_recheck_job), min(recheck, s.health_interval_seconds)),
            ("retention", self._tracked(self._retention_job), s.retention_interval_seconds),
            ("reconcile", self._tracked(self._reconcile_job), s.reconcile_interval_seconds),
            ("requeue_stuck", self._tracked(self._requeue_job), 30.0),
        ]

    def reschedule(self) -> None:
        """Apply changed intervals to the running scheduler."""
        if self._scheduler is None:
            return
        for job_id, func, seconds in self._jobs():
            job = self._scheduler.get_job(job_id)
            if seconds <= 0:
                if job is not None:
                    job.remove()
            elif job is None:
                self._scheduler.add_job(func, "interval", seconds=seconds, id=job_id, name=job_id, max_instances=1,
                                        coalesce=True)
            else:
                job.reschedule("interval", seconds=seconds)

    def job_intervals(self) -> dict[str, float]:
        if self._scheduler is None:
            return {}
        return {job.id: job.trigger.interval.total_seconds() for job in self._scheduler.get_jobs()}

    # ==================================================================================== jobs

    async def _incremental_job(self) -> None:
        if self.paused:
            return
        summary = await incremental_sync(self.engine)
        if summary.writes or summary.failed:
            await self._log(f"incremental sync: {summary.processed} checked, {summary.writes} written, "
                            f"{summary.failed} failed", outcome="incremental")

    async def _health_job(self) -> None:
        from erpsync_tui.engine import health

        await health.run_checks(self.config, self.db, self.connectors)

    async def _health_recheck_job(self) -> None:
        from erpsync_tui.engine import health

        await health.recheck_failing(self.config, self.db, self.connectors)  # a fixed error is blamed no longer

    async def _retention_job(self) -> None:
        pruned = await asyncio.to_thread(retention.prune, self.db, keep_days=self.config.scheduler.retention_days)
        self._retention_runs += 1
        vacuum = self._retention_runs % VACUUM_EVERY == 0
        await asyncio.to_thread(retention.maintain, self.db, vacuum=vacuum)
        if pruned.queue_items or pruned.log_rows:
            await self._log(f"retention: pruned {pruned.queue_items} done items, {pruned.log_rows} log rows",
                            outcome="retention")

    async def _reconcile_job(self) -> None:
        from erpsync_tui.engine.bulk import reconcile
        from erpsync_tui.engine.health import reconcile_names, record_reconcile

        found: dict[str, int] = {}
        names: dict[str, list[dict[str, str]]] = {}
        for doctype in self.config.sync.doctypes:
            report = await reconcile(self.engine, doctype)
            found[doctype] = len(report.differences)
            names.update(reconcile_names([report]))
            if report.differences:
                await self._log(f"reconcile {doctype}: {len(report.differences)} differences (`erpsync-tui "
                                "reconcile` lists them with values)", level="WARNING", outcome="reconcile",
                                code="ERP009")
        await asyncio.to_thread(record_reconcile, self.db, found, source="scheduled", names=names)

    async def _requeue_job(self) -> None:
        stuck = timedelta(minutes=self.config.alerts.stuck_item_minutes)
        count = await asyncio.to_thread(queue.requeue_expired, self.db, stuck_after=stuck)
        if count:
            await self._log(f"requeued {count} expired or stuck items", level="WARNING", outcome="requeued",
                            code="ERP010")

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

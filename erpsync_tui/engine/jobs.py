"""The engine service's periodic jobs on APScheduler: incremental sync, health, retention, reconcile, requeue.

`ScheduledJobs` is a mixin of `EngineService` (engine/service.py), which supplies the config, the database,
the engine, `_log` and the set of background tasks `stop()` cancels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.util import undefined

from erpsync_tui.engine.bulk import incremental_sync
from erpsync_tui.store import queue, retention

log = logging.getLogger("erpsync.service")

VACUUM_EVERY = 24  # retention runs between two VACUUMs


class ScheduledJobs:
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
        from erpsync_tui.engine.health import reconcile_names, record_reconcile
        from erpsync_tui.engine.reconcile import reconcile

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

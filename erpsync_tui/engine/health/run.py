"""Running the checks: the plan, concurrency and timeouts, storing the results."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import select

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors.base import (
    Connector,
)
from erpsync_tui.engine.health.result import CHECK_STEPS, DB_TIMEOUT_SECONDS, CheckResult, _result
from erpsync_tui.engine.health.site_checks import (
    _circuit_detail,
    check_authenticated,
    check_circuit,
    check_clock_skew,
    check_doctypes,
    check_reachable,
    check_receiver,
)
from erpsync_tui.engine.health.store_checks import (
    _reason,
    check_backlog,
    check_database_integrity,
    check_database_size,
    check_database_writable,
    check_dead,
    check_disk_free,
    check_engine_running,
    check_error_rate,
    check_failed,
    check_long_transactions,
    check_open_conflicts,
    check_receiver_rejected,
    check_receiver_secret,
    check_reconcile,
    check_stuck,
)
from erpsync_tui.engine.health.tls import _probe_timeout, check_tls_expiry, check_tls_verify
from erpsync_tui.errors import ErrorCode
from erpsync_tui.store import control
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import HealthResult, utcnow

log = logging.getLogger("erpsync.health")


# ============================================================================================ running them


@dataclass(frozen=True, slots=True)
class _Planned:
    check: str
    target: str
    run: Callable[[], Awaitable[CheckResult]]


def _in_thread(function: Callable[..., CheckResult], *args: Any) -> Callable[[], Awaitable[CheckResult]]:
    async def run() -> CheckResult:
        return await asyncio.wait_for(asyncio.to_thread(function, *args), DB_TIMEOUT_SECONDS)

    return run


def _inline(function: Callable[..., CheckResult], *args: Any) -> Callable[[], Awaitable[CheckResult]]:
    """A cheap synchronous check run on the loop itself (no I/O), still inside `_guarded`."""

    async def run() -> CheckResult:
        return function(*args)

    return run


def _site_plan(config: AppConfig, name: str, connector: Connector | None, circuits: Callable[[], Awaitable[CheckResult]]
               ) -> list[_Planned]:
    site = config.sites[name]
    auth_timeout = 2 * _probe_timeout(site)  # whoami may queue behind the engine's own requests
    return [
        _Planned("site.reachable", name, lambda: check_reachable(name, site)),
        _Planned("site.tls_expiry", name, lambda: check_tls_expiry(name, site, config.alerts.tls_min_days_left)),
        _Planned("site.tls_verify", name, _inline(check_tls_verify, name, site)),
        _Planned("site.circuit", name, circuits),
        _Planned("site.authenticated", name, lambda: check_authenticated(name, connector, auth_timeout)),
        _Planned("site.doctypes", name, lambda: check_doctypes(name, connector, config.sync.doctypes, auth_timeout)),
    ]


def _circuit_runner(name: str, connector: Connector | None, db: Database, owned: bool
                    ) -> Callable[[], Awaitable[CheckResult]]:
    """A live connector knows its breaker; a temporary one (doctor) knows nothing, so ask the running engine."""
    if connector is not None and not owned:
        live = connector
        return _inline(lambda: check_circuit(name, live.circuit_state, _circuit_detail(live)))

    def from_lease() -> CheckResult:
        status = control.engine_status(db)
        state = status.circuits.get(name)
        return check_circuit(name, state, f"as reported by the running engine ({status.holder})" if state else "")

    return _in_thread(from_lease)


def _plan(config: AppConfig, db: Database, connectors: Mapping[str, Connector], owned: bool) -> list[_Planned]:
    alerts = config.alerts
    plan: list[_Planned] = []
    for name in config.pair:
        connector = connectors.get(name)
        plan += _site_plan(config, name, connector, _circuit_runner(name, connector, db, owned))
    plan += [
        _Planned("database.writable", "database", _in_thread(check_database_writable, db)),
        _Planned("database.integrity", "database", _in_thread(check_database_integrity, db)),
    ]
    if db.path is not None:  # PostgreSQL's disk is its server's business: its size and old transactions instead
        plan.append(_Planned("database.disk_free", "database",
                             _in_thread(check_disk_free, db.path.parent, alerts.min_free_disk_mb)))
    elif not db.is_sqlite:
        plan += [_Planned("database.size", "database", _in_thread(check_database_size, db)),
                 _Planned("database.transactions", "database", _in_thread(check_long_transactions, db))]
    plan += [
        _Planned("engine.running", "engine", _in_thread(check_engine_running, db)),
        _Planned("receiver.listening", "webhooks", lambda: check_receiver(config)),
        _Planned("queue.stuck", "queue", _in_thread(check_stuck, db, alerts.stuck_item_minutes)),
        _Planned("sync.error_rate", "sync",
                 _in_thread(check_error_rate, db, alerts.error_rate_percent, alerts.error_rate_window_minutes)),
        _Planned("receiver.secret", "webhooks", _in_thread(check_receiver_secret, db)),
        _Planned("receiver.rejected", "webhooks", _in_thread(check_receiver_rejected, db)),
        _Planned("queue.dead", "queue", _in_thread(check_dead, db)),
        _Planned("queue.failed", "queue", _in_thread(check_failed, db)),
        _Planned("conflicts.open", "conflicts", _in_thread(check_open_conflicts, db)),
        _Planned("sync.reconcile", "sync", _in_thread(check_reconcile, db)),
        _Planned("sites.clock", "sites", lambda: check_clock_skew(config)),
        _Planned("queue.backlog", "queue", _in_thread(check_backlog, db, alerts.backlog_max)),
    ]
    return plan


def _selected(check: str, only: set[str] | None) -> bool:
    """`only` names check ids ("site.reachable") or families ("site", "queue")."""
    return only is None or check in only or check.split(".", 1)[0] in only


async def _guarded(planned: _Planned) -> CheckResult:
    """Run one check; whatever it raises becomes its own failing result, never the whole run's."""
    try:
        return await planned.run()
    except TimeoutError:
        return _result(planned.check, planned.target, "fail", "timed out",
                       f"the check did not finish within {DB_TIMEOUT_SECONDS:g} s", ErrorCode.TIMEOUT)
    except Exception as exc:
        log.exception("health check %s %s crashed", planned.check, planned.target)
        return _result(planned.check, planned.target, "fail", "check failed",
                       f"{type(exc).__name__}: {_reason(exc)}", ErrorCode.QUEUE)


def _temporary_connectors(config: AppConfig, credentials: Mapping[str, tuple[str, str]]) -> dict[str, Connector]:
    from erpsync_tui.connectors import site_connectors

    # One attempt, no retries: a doctor run must answer quickly, and a retry would hide a flaky site.
    return dict(site_connectors(config, credentials, sites=credentials, max_retries=0))


async def run_checks(
    config: AppConfig,
    db: Database,
    connectors: Mapping[str, Connector] | None,
    *,
    only: set[str] | None = None,
    credentials: Mapping[str, tuple[str, str]] | None = None,
    store: bool = True,
) -> list[CheckResult]:
    """Run every check (or those in `only`) concurrently and store the results; never raises for a failing check.

    Without `connectors` (the doctor CLI), temporary connectors are built from `credentials` (site → key, secret)
    and closed afterwards; circuit states then come from the running engine's lease.
    """
    owned = connectors is None
    live: Mapping[str, Connector] = _temporary_connectors(config, credentials or {}) if owned else connectors or {}
    try:
        plan = [p for p in _plan(config, db, live, owned) if _selected(p.check, only)]
        results = list(await asyncio.gather(*(_guarded(p) for p in plan)))
    finally:
        if owned:
            await asyncio.gather(*(c.aclose() for c in live.values()), return_exceptions=True)
    if store:
        try:
            await asyncio.wait_for(asyncio.to_thread(store_results, db, results, full=only is None),
                                   DB_TIMEOUT_SECONDS)
        except Exception as exc:  # the checks already say what is wrong with the database
            log.warning("could not store health results in %s: %s", db.label, _reason(exc))
    return results


RECHECK_SECONDS = 10.0  # how soon a failing check is run again by the engine (scheduler job `health_recheck`)


def failing_checks(db: Database) -> set[str]:
    """The ids of checks whose stored result fails now (what the triage would blame)."""
    with db.read() as session:
        return {str(c) for c in session.exec(select(HealthResult.check).where(HealthResult.status == "fail")).all()}


async def recheck_failing(config: AppConfig, db: Database, connectors: Mapping[str, Connector] | None
                          ) -> list[CheckResult]:
    """Run again, and store, only the checks whose stored result fails; nothing when none fails.

    Why: the triage blames an error only while it is happening. A stored failure is otherwise replaced only by
    the next full run (`scheduler.health_interval_seconds`), so a restored key or a site back up stayed blamed
    until then; the engine calls this every RECHECK_SECONDS, so a fixed error clears within seconds, and a
    lasting one is confirmed with a fresh `checked_at`.
    """
    failing = await asyncio.to_thread(failing_checks, db)
    if not failing:
        return []
    return await run_checks(config, db, connectors, only=failing)


def store_results(db: Database, results: Iterable[CheckResult], *, full: bool = False) -> None:
    """Upsert one health_result row per check and target in one transaction, logging status changes.

    `full`: the results are a complete run, so rows of our checks that were not produced (a site removed from
    the config) are deleted rather than left showing a stale verdict.
    """
    now = utcnow()
    results = list(results)
    with db.write() as session:
        rows = {(r.check, r.target): r for r in session.exec(select(HealthResult)).all()}
        for result in results:
            row = rows.pop((result.check, result.target), None)
            if row is None:
                row = HealthResult(check=result.check, target=result.target)
            elif row.status != result.status:
                _log_change(row.status, result)
            row.status, row.value, row.detail = result.status, result.value, result.detail
            row.error_code, row.quick_fix, row.checked_at = result.error_code, result.quick_fix, now
            session.add(row)
        if full:
            for row in rows.values():
                if row.check in CHECK_STEPS:
                    session.delete(row)


def _log_change(previous: str, result: CheckResult) -> None:
    level = logging.WARNING if result.status != "ok" else logging.INFO
    code = f" {result.error_code}" if result.error_code else ""
    log.log(level, "health %s %s: %s → %s%s: %s", result.check, result.target, previous, result.status, code,
            result.detail)

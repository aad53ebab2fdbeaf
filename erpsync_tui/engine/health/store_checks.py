"""Checks of the state database, the engine, the queue and the receiver's reports (synchronous)."""

from __future__ import annotations

import logging
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from erpsync_tui.engine.health.result import LONG_TRANSACTION_MINUTES, PROBE_KEY, CheckResult, _items, _result
from erpsync_tui.errors import ErrorCode, quick_fix
from erpsync_tui.store import control, counts, postgres, queries, sqlite
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import (
    Meta,
    QueueItem,
    QueueStatus,
    RecordStatus,
    SyncLog,
    SyncName,
    SyncRecord,
    utcnow,
)

# ============================================================================================ store checks
# Synchronous: run_checks sends each of these to a worker thread.


def _db_fix(reason: str) -> str:
    if "readonly" in reason or "read-only" in reason:
        return "Check the permissions of the database file and its folder, and the free disk space."
    if "malformed" in reason or "not a database" in reason or "corrupt" in reason:
        return "The database is corrupt: stop the engine and restore it from a backup (`erpsync-tui backup`)."
    if "locked" in reason:
        return "Another process holds the write lock too long; look for a stuck erpsync-tui or a backup tool."
    return quick_fix(ErrorCode.QUEUE)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def _clip(report: str, lines: int = 3) -> str:
    # quick_check lists every damaged cell, one per line: thousands of lines on a badly damaged file.
    rows = [row for row in report.splitlines() if row.strip()]
    more = f" (+{len(rows) - lines} more lines)" if len(rows) > lines else ""
    return "; ".join(rows[:lines]) + more


def check_database_writable(db: Database) -> CheckResult:
    check, started = "database.writable", time.perf_counter()
    try:
        with db.write() as session:  # BEGIN IMMEDIATE on SQLite: the same lock the engine needs
            row = session.get(Meta, PROBE_KEY) or Meta(key=PROBE_KEY, value="")
            row.value = utcnow().isoformat()
            session.add(row)
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "not writable", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    elapsed = f"{(time.perf_counter() - started) * 1000:.0f} ms"
    return _result(check, "database", "ok", elapsed, f"a write transaction on {db.label} committed in {elapsed}")


def check_database_integrity(db: Database) -> CheckResult:
    check = "database.integrity"
    try:
        if db.is_sqlite:
            verdict = sqlite.quick_check(db.reader_engine)
        else:  # the server checks its own pages; ours is whether it answers
            version = postgres.server_health(db.reader_engine).version
            verdict = "ok"
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "unreadable", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    if verdict != "ok":
        return _result(check, "database", "fail", "corrupt", f"PRAGMA quick_check on {db.label}: {_clip(verdict)}",
                       ErrorCode.QUEUE, _db_fix("corrupt"))
    drifted = _recounted(db)
    if drifted:
        return _result(check, "database", "warn", "counts repaired",
                       f"the per-status counts `status` reads differed from the rows and were recounted: {drifted}",
                       ErrorCode.QUEUE, "Nothing to do: they are right again. Rows written with triggers disabled "
                       "(a data-only restore) cause this; restore whole databases.")
    if not db.is_sqlite:
        return _result(check, "database", "ok", "ok", f"PostgreSQL {version} at {db.label} answers")
    return _result(check, "database", "ok", "ok", f"PRAGMA quick_check on {db.label} passed")


def _recounted(db: Database) -> str:
    """The kept status counts checked against the rows (store/counts.py), repaired if they differ."""
    try:
        return "; ".join(counts.verify(db))
    except Exception as exc:  # e.g. a read-only database: the integrity verdict stands on its own
        logging.getLogger("erpsync.health").warning("status counts not checked in %s: %s", db.label, _reason(exc))
        return ""


def check_database_size(db: Database) -> CheckResult:
    """PostgreSQL's counterpart of disk free: the server's disk is its DBA's, the database's size is ours."""
    check = "database.size"
    try:
        figures = postgres.server_health(db.reader_engine)
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "unknown", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    size_mb = figures.size_bytes / (1024 * 1024)
    return _result(check, "database", "ok", f"{size_mb:,.0f} MB",
                   f"{db.label}: {size_mb:,.1f} MB, {figures.connections} connections (retention deletes old "
                   "rows; autovacuum reclaims their space)")


def check_long_transactions(db: Database, max_minutes: float = LONG_TRANSACTION_MINUTES) -> CheckResult:
    """A transaction open for long on the state database holds back autovacuum and may hold row locks the
    engine's writes wait for (a forgotten `BEGIN` in psql, a stuck backup)."""
    check = "database.transactions"
    try:
        oldest = postgres.server_health(db.reader_engine).oldest
    except Exception as exc:
        reason = _reason(exc)
        return _result(check, "database", "fail", "unknown", f"{db.label}: {reason}", ErrorCode.QUEUE,
                       _db_fix(reason))
    if oldest is None or oldest.seconds < max_minutes * 60:
        age = "none open" if oldest is None else f"oldest {oldest.seconds:.0f} s"
        return _result(check, "database", "ok", age, f"no transaction on {db.label} open longer than "
                       f"{max_minutes:g} min")
    who = f"pid {oldest.pid} ({oldest.application or 'no application name'}, {oldest.state})"
    return _result(check, "database", "warn", f"{oldest.seconds / 60:.0f} min",
                   f"a transaction of {who} has been open {oldest.seconds / 60:.1f} min: {oldest.query[:120]}",
                   ErrorCode.QUEUE,
                   f"Find it with `SELECT pid, state, xact_start, query FROM pg_stat_activity WHERE pid = "
                   f"{oldest.pid}` and end it if it is stuck (`SELECT pg_terminate_backend({oldest.pid})`).")


def check_disk_free(folder: Path, min_free_mb: int) -> CheckResult:
    check = "database.disk_free"
    try:
        free_mb = shutil.disk_usage(folder).free // (1024 * 1024)
    except OSError as exc:
        return _result(check, "database", "fail", "unknown", f"cannot measure free space in {folder}: {exc}",
                       ErrorCode.QUEUE)
    value = f"{free_mb:,} MB free"
    if free_mb < min_free_mb:
        return _result(check, "database", "fail", value,
                       f"{folder} has {free_mb:,} MB free, below alerts.min_free_disk_mb ({min_free_mb:,} MB)",
                       ErrorCode.QUEUE, f"Free space in {folder} (old backups, logs) or move the database; "
                       "the engine stops when the disk is full.")
    return _result(check, "database", "ok", value, f"{folder}: {free_mb:,} MB free")


def check_engine_running(db: Database) -> CheckResult:
    check = "engine.running"
    try:
        status = control.engine_status(db)
    except Exception as exc:
        return _result(check, "engine", "fail", "unknown", f"cannot read the engine lease: {_reason(exc)}",
                       ErrorCode.QUEUE)
    if status.mode == "stopped":
        return _result(check, "engine", "fail", "stopped", "no engine holds the lease on this database",
                       ErrorCode.QUEUE, "Start the engine (`erpsync-tui serve` or its service unit); if it keeps "
                       "stopping, read its log.")
    heartbeat = f"{status.heartbeat_at:%H:%M:%S} UTC" if status.heartbeat_at else "?"
    detail = f"held by {status.holder} on {status.hostname} (pid {status.pid}), last heartbeat {heartbeat}"
    if status.mode == "paused":
        return _result(check, "engine", "fail", "paused", detail + "; paused by an operator: webhooks are stored "
                       "but nothing syncs", ErrorCode.QUEUE,
                       "Resume it when the reason for the pause is gone: `erpsync-tui resume` (`erpsync-tui actions` "
                       "shows who paused it and when).")
    return _result(check, "engine", "ok", status.mode, detail)


def check_backlog(db: Database, backlog_max: int) -> CheckResult:
    check = "queue.backlog"
    try:
        with db.read() as session:
            depth = queries.queue_depth(session)
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    pending, failed = depth.by_status.get(QueueStatus.PENDING, 0), depth.by_status.get(QueueStatus.FAILED, 0)
    detail = f"{pending} pending, {failed} waiting to retry (alerts.backlog_max {backlog_max})"
    if depth.oldest_pending_age is not None:
        detail += f"; oldest pending {depth.oldest_pending_age.total_seconds() / 60:.0f} min"
    status = "fail" if depth.backlog > backlog_max else "ok"
    return _result(check, "queue", status, _items(depth.backlog), detail, ErrorCode.QUEUE,
                   "The engine is not keeping up: check site latency and rate limits, or raise sync.concurrency.")


def _count(db: Database, *conditions: Any) -> int:
    with db.read() as session:
        return int(session.exec(select(func.count()).select_from(QueueItem).where(*conditions)).one())


def check_stuck(db: Database, stuck_minutes: float) -> CheckResult:
    check = "queue.stuck"
    cutoff = utcnow() - timedelta(minutes=stuck_minutes)
    try:
        stuck = _count(db, QueueItem.status == QueueStatus.IN_PROGRESS, col(QueueItem.updated_at) < cutoff)
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    if stuck:
        return _result(check, "queue", "fail", _items(stuck),
                       f"{_items(stuck)} in progress for over {stuck_minutes:g} min (alerts.stuck_item_minutes)",
                       ErrorCode.QUEUE, "A worker hung or died holding them: requeue them from the console's Queue "
                       "screen (requeue stuck) and check the engine's log.")
    return _result(check, "queue", "ok", "0 items", f"nothing in progress for over {stuck_minutes:g} min")


def check_failed(db: Database) -> CheckResult:
    """Failed items wait for their next attempt: documents not in sync now, whatever the reason."""
    check = "queue.failed"
    try:
        failed = _count(db, QueueItem.status == QueueStatus.FAILED)
        top = _top_code(db, QueueStatus.FAILED) if failed else None
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    if failed:
        code = _error_code(top)
        return _result(check, "queue", "fail", _items(failed),
                       f"{_items(failed)} failed and wait for their next attempt (most common code {top or '?'})",
                       code, f"`erpsync-tui queue --status failed` shows why; {quick_fix(code)}")
    return _result(check, "queue", "ok", "0 items", "no failed item waiting")


def _top_code(db: Database, status: str) -> str | None:
    with db.read() as session:
        row = session.exec(
            select(QueueItem.error_code, func.count().label("n"))
            .where(QueueItem.status == status, col(QueueItem.error_code).is_not(None))
            .group_by(QueueItem.error_code).order_by(func.count().desc()).limit(1)
        ).first()
    return str(row[0]) if row else None


RECONCILE_KEY = "reconcile_result"  # the meta row: the last reconcile's differences by doctype (JSON)
RECONCILE_NAMES_KEPT = 1000  # per doctype: the names a later sync can clear the finding by (more: only a new run)


def record_reconcile(db: Database, differences: dict[str, int], *, source: str,
                     names: dict[str, list[dict[str, str]]] | None = None) -> None:
    """Keep what the last reconcile found (the scheduled job or the CLI), for doctor and the console.

    `names`: per doctype, each difference's names by site (`Difference.names`); with them `check_reconcile`
    stops reporting a difference once its document has been synced since (`reconcile_names` makes them).
    """
    import json

    kept = {d: rows[:RECONCILE_NAMES_KEPT] for d, rows in (names or {}).items()
            if differences.get(d) and len(rows) == differences[d] <= RECONCILE_NAMES_KEPT}
    value = json.dumps({"at": utcnow().isoformat(), "source": source, "differences": differences, "names": kept})
    with db.write() as session:
        row = session.get(Meta, RECONCILE_KEY) or Meta(key=RECONCILE_KEY, value="")
        row.value = value
        session.add(row)


def reconcile_names(reports: Any) -> dict[str, list[dict[str, str]]]:
    """`record_reconcile`'s `names` from reconcile reports (engine/reconcile.py's ReconcileReport)."""
    return {report.doctype: [dict(diff.names) for diff in report.differences] for report in reports}


def _synced_since(db: Database, doctype: str, at: datetime, differences: list[dict[str, str]]) -> int:
    """How many of these differences had their document synced (or its delete carried out) after `at`.

    A difference is settled by the sync that writes it: its record is then `synced` (or `deleted`) with a later
    `updated_at`. One that only failed or became a conflict since stays reported.
    """
    by_site: dict[str, set[str]] = {}
    for names in differences:
        for site, name in names.items():
            by_site.setdefault(site, set()).add(name)
    settled: set[tuple[str, str]] = set()
    with db.read() as session:
        for site, wanted in by_site.items():
            ordered = sorted(wanted)
            for start in range(0, len(ordered), 500):
                rows = session.exec(
                    select(SyncName.name, SyncRecord.status, SyncRecord.updated_at)
                    .join(SyncRecord, SyncRecord.id == SyncName.record_id)  # type: ignore[arg-type]
                    .where(SyncName.site == site, SyncName.doctype == doctype,
                           col(SyncName.name).in_(ordered[start:start + 500]))).all()
                settled.update((site, name) for name, status, updated in rows
                               if status in (RecordStatus.SYNCED, RecordStatus.DELETED) and _aware(updated) > at)
    return sum(1 for names in differences if any((site, name) in settled for site, name in names.items()))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _age(at: datetime) -> str:
    minutes = max(0, int((utcnow() - at).total_seconds() // 60))
    if minutes < 120:
        return f"{minutes} min ago"
    return f"{minutes // 60} h ago" if minutes < 2880 else f"{minutes // 1440} days ago"


def check_reconcile(db: Database) -> CheckResult:
    """The last reconcile's differences, less those whose documents were synced since (with its age)."""
    import json

    check = "sync.reconcile"
    with db.read() as session:
        row = session.get(Meta, RECONCILE_KEY)
    if row is None:
        return _result(check, "sync", "ok", "not run", "no reconcile has run yet "
                       "(scheduler.reconcile_interval_seconds, `erpsync-tui reconcile`)")
    data = json.loads(row.value)
    at = _aware(datetime.fromisoformat(data["at"])) if data.get("at") else utcnow()
    when = f"the reconcile of {data.get('at', '?')[:19]} UTC ({_age(at)}, {data.get('source')})"
    found = {d: n for d, n in data.get("differences", {}).items() if n}
    left: dict[str, int] = {}
    settled = 0
    for doctype, n in found.items():
        names = data.get("names", {}).get(doctype)
        done = _synced_since(db, doctype, at, names) if names else 0
        settled += done
        if n - done:
            left[doctype] = n - done
    since = f"; {settled} of them synced since" if settled else ""
    if left:
        listed = ", ".join(f"{d} {n}" for d, n in left.items())
        return _result(check, "sync", "fail", f"{sum(left.values())} differences",
                       f"{when} found differences not synced since: {listed}{since}", ErrorCode.RECONCILIATION)
    if found:
        return _result(check, "sync", "ok", "0 differences", f"{when} found {sum(found.values())} differences; "
                       "every one was synced since")
    return _result(check, "sync", "ok", "0 differences", f"{when} found the sites in agreement")


def check_receiver_secret(db: Database) -> CheckResult:
    """The running engine's receiver has a webhook secret (as the engine reports it: its environment, not ours)."""
    check = "receiver.secret"
    status = control.engine_status(db)
    has = status.info.get("webhook_secret")
    if status.mode == "stopped" or has is None:
        return _result(check, "webhooks", "ok", "no receiver", "no running engine reports a receiver")
    if not has:
        return _result(check, "webhooks", "fail", "no secret",
                       f"the receiver of the running engine ({status.holder}) has no webhook secret: it refuses "
                       "every webhook (HTTP 503)", ErrorCode.WEBHOOK,
                       "Give serve the secret — `erpsync-tui secrets set webhook` as its user, or "
                       "ERPSYNC_WEBHOOK_SECRET in its EnvironmentFile — then restart it.")
    return _result(check, "webhooks", "ok", "configured", "the running engine's receiver verifies signatures")


REJECTION_WINDOW_MINUTES = 15
AUTH_REJECTIONS = ("bad_signature", "missing_signature", "no_secret")


def check_receiver_rejected(db: Database) -> CheckResult:
    """Webhooks the running receiver refused recently (a wrong secret on a site shows up only here)."""
    check = "receiver.rejected"
    status = control.engine_status(db)
    recent: dict[str, int] = dict(status.info.get("webhooks_rejected_recent") or {})
    refused = {reason: n for reason, n in recent.items() if n}
    if not refused:
        return _result(check, "webhooks", "ok", "0", f"no webhook refused in the last {REJECTION_WINDOW_MINUTES} min")
    listed = ", ".join(f"{reason} {n}" for reason, n in sorted(refused.items()))
    total = sum(refused.values())
    code = ErrorCode.WEBHOOK
    if any(reason in AUTH_REJECTIONS for reason in refused):
        fix = ("A site signs with another secret: set each site's Webhook secret to `erpsync-tui secrets get webhook "
               "--show` (events it sent meanwhile arrive with the incremental sync).")
    else:
        fix = quick_fix(code)
    return _result(check, "webhooks", "fail", f"{total} refused",
                   f"the receiver refused {total} webhooks in the last {REJECTION_WINDOW_MINUTES} min: {listed}",
                   code, fix)


def check_dead(db: Database) -> CheckResult:
    check = "queue.dead"
    try:
        dead = _count(db, QueueItem.status == QueueStatus.DEAD)
    except Exception as exc:
        return _result(check, "queue", "fail", "unknown", f"cannot read the queue: {_reason(exc)}", ErrorCode.QUEUE)
    if dead:
        return _result(check, "queue", "warn", _items(dead),
                       f"{_items(dead)} gave up after their last attempt; those documents are not in sync",
                       ErrorCode.QUEUE)
    return _result(check, "queue", "ok", "0 items", "no dead items")


def check_open_conflicts(db: Database) -> CheckResult:
    check = "conflicts.open"
    try:
        with db.read() as session:
            n = queries.open_conflict_count(session)
    except Exception as exc:
        return _result(check, "conflicts", "fail", "unknown", f"cannot read conflicts: {_reason(exc)}",
                       ErrorCode.RECONCILIATION)
    if n:
        label = "1 conflict" if n == 1 else f"{n} conflicts"
        return _result(check, "conflicts", "warn", label, f"{label} wait for an operator's decision",
                       ErrorCode.RECONCILIATION, "Resolve them in the console's Conflicts screen or with "
                       "`erpsync-tui conflicts` / `erpsync-tui resolve`.")
    return _result(check, "conflicts", "ok", "0 conflicts", "no open conflicts")


def check_error_rate(db: Database, percent_max: float, window_minutes: int) -> CheckResult:
    """Share of ERROR rows among the sync log rows with an outcome (one per document processed) in the window."""
    check = "sync.error_rate"
    since = utcnow() - timedelta(minutes=window_minutes)
    try:
        total, errors, top_code = _error_counts(db, since)
    except Exception as exc:
        return _result(check, "sync", "fail", "unknown", f"cannot read the sync log: {_reason(exc)}", ErrorCode.QUEUE)
    if total == 0:
        return _result(check, "sync", "ok", "0%", f"no documents processed in the last {window_minutes} min")
    rate = errors * 100 / total
    value = f"{rate:.1f}% ({errors} of {total})"
    if rate > percent_max:
        code = _error_code(top_code)
        detail = (f"{errors} of {total} outcomes in the last {window_minutes} min were errors, over "
                  f"alerts.error_rate_percent ({percent_max:g}%)")
        if top_code:
            detail += f"; most common code {top_code}"
        return _result(check, "sync", "fail", value, detail, code)
    return _result(check, "sync", "ok", value, f"last {window_minutes} min, limit {percent_max:g}%")


def _error_counts(db: Database, since: datetime) -> tuple[int, int, str | None]:
    in_window = (col(SyncLog.ts) >= since, col(SyncLog.outcome).is_not(None))
    is_error = SyncLog.level == "ERROR"
    with db.read() as session:
        total = int(session.exec(select(func.count()).select_from(SyncLog).where(*in_window)).one())
        errors = int(session.exec(select(func.count()).select_from(SyncLog).where(*in_window, is_error)).one())
        top = session.exec(
            select(SyncLog.error_code, func.count().label("n"))
            .where(*in_window, is_error, col(SyncLog.error_code).is_not(None))
            .group_by(SyncLog.error_code)
            .order_by(func.count().desc())
            .limit(1)
        ).first()
    return total, errors, (str(top[0]) if top else None)


def _error_code(value: str | None) -> ErrorCode:
    # The most common code among the errors gives the most useful fix; without one, the queue's.
    try:
        return ErrorCode(value) if value else ErrorCode.QUEUE
    except ValueError:
        return ErrorCode.QUEUE

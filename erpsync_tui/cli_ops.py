"""Operator commands without the console: pause, resume, retry, discard, resolve, queue, actions.

Every command that changes something sends one typed operator action (store/actions.py) — the same row the
console writes — and waits for its outcome: the engine that holds the lease carries it out, or, when none
runs, this process does (taking the lease meanwhile, so no engine starts under it). `--no-wait` returns once
the row is written; `--timeout` says how long to wait, and what is still pending when it runs out.
Registered in cli.py (`_register_layer_commands`).
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from erpsync_tui import secrets as secret_store
from erpsync_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    emit_json,
    handles_missing_secrets,
    operator_identity,
    pass_ctx,
)
from erpsync_tui.store import actions as act
from erpsync_tui.store.queries import PROBLEM_STATUSES, QueueFilter

SITE_FREE = frozenset({"pause", "resume", "discard", "requeue_stuck"})  # carried out without talking to a site
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
STATUSES = ("pending", "in_progress", "failed", "dead", "done", "discarded")


def parse_duration(text: str) -> float:
    """"90s", "10m", "2h", "1d" (a bare number is seconds) → seconds."""
    match = DURATION.match(text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 10m, 2h or 1d")
    return float(match.group(1)) * UNITS[match.group(2)]


def wait_options(func: Any) -> Any:
    func = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)
    func = click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the outcome.")(func)
    return click.option("--no-wait", is_flag=True, help="Return once the action is sent.")(func)


def filter_options(func: Any) -> Any:
    func = click.option("--older-than", "older_than", metavar="DURATION",
                        help="Only items created longer ago than this (90s, 10m, 2h, 1d).")(func)
    func = click.option("--site", help="Only items of this site.")(func)
    func = click.option("--doctype", help="Only items of this doctype.")(func)
    return click.option("--code", "error_code", metavar="ERPnnn", help="Only items with this error code.")(func)


def build_filter(statuses: tuple[str, ...], error_code: str | None, doctype: str | None, site: str | None,
                 older_than: str | None) -> QueueFilter:
    return QueueFilter(statuses=statuses or PROBLEM_STATUSES, doctype=doctype, site=site,
                       error_code=error_code.upper() if error_code else None,
                       older_than_seconds=parse_duration(older_than) if older_than else None)


# ============================================================================================== sending


def send(ctx: Context, action: act.Action, *, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Write the action, have it carried out (by the engine, or here when none runs), report the outcome."""
    from erpsync_tui.store import control

    db = ctx.database()
    actor, host = operator_identity()
    running = control.engine_status(db).mode != "stopped"
    here = None if running or no_wait else _local_runner(ctx, action)
    action_id = act.submit(db, action, actor=actor, host=host)
    if no_wait:
        _report(ctx, act.wait(db, action_id, 0), as_json, sent_only=True)
        return
    ran_here = here is not None and _run_here(ctx, here, action_id)
    # Carried out here: whatever is not final now (a resolution left to retry) has no engine to finish it.
    row = act.wait(db, action_id, 0 if ran_here else timeout)
    _report(ctx, row, as_json)


def _local_runner(ctx: Context, action: act.Action) -> Any:
    """The engine parts this process needs to carry the action out itself (sites only when the action needs
    them, so `pause` works without credentials)."""
    from erpsync_tui.cli_common import _engine_for
    from erpsync_tui.engine.sync import SyncEngine

    if action.kind in SITE_FREE:
        return SyncEngine(ctx.config(), ctx.database(), {}, actor="cli:" + "@".join(operator_identity()))
    return _engine_for(ctx)


def _run_here(ctx: Context, engine: Any, action_id: int) -> bool:
    import os
    import socket

    from erpsync_tui.engine.actions import ActionRunner
    from erpsync_tui.engine.worker import QueueWorker
    from erpsync_tui.store import control

    db = engine.db
    holder = f"cli:{socket.gethostname()}:{os.getpid()}"
    ttl = ctx.config().scheduler.lease_ttl_seconds
    try:
        control.acquire_lease(db, holder, ttl)
    except control.LeaseHeld:
        return False  # an engine started meanwhile: it takes the action; we wait for its outcome
    engine.fence = holder
    spawned: list[asyncio.Task[Any]] = []

    async def main() -> None:
        def spawn(coro: Awaitable[Any]) -> None:
            spawned.append(asyncio.ensure_future(coro))

        async def set_paused(paused: bool) -> None:
            await asyncio.to_thread(control.set_paused, db, paused)

        renewing = asyncio.create_task(_renew(db, holder, ttl))
        runner = ActionRunner(engine, QueueWorker(engine, owner=holder), is_paused=lambda: control.wants_paused(db),
                              set_paused=set_paused, wake=lambda: None, spawn=spawn)
        try:
            for row in await asyncio.to_thread(control.claim_actions, db, holder, ids=[action_id]):
                try:
                    typed = act.of_row(row)
                except ValueError as exc:
                    await asyncio.to_thread(control.finish_action, db, action_id, ok=False, result=f"failed: {exc}")
                    continue
                outcome = await runner.run(action_id, typed)
                if outcome is not None:
                    await asyncio.to_thread(control.finish_action, db, action_id, ok=outcome[0], result=outcome[1])
            if spawned:
                await asyncio.gather(*spawned, return_exceptions=True)
        finally:
            renewing.cancel()
            from erpsync_tui.cli_common import _close

            await _close(engine)

    try:
        asyncio.run(main())
    finally:
        from erpsync_tui.store import queue

        queue.release(db, holder)
        control.release_lease(db, holder)
    return True


async def _renew(db: Any, holder: str, ttl: float) -> None:
    from erpsync_tui.store import control

    while True:
        await asyncio.sleep(ttl / 3)
        await asyncio.to_thread(control.renew_lease, db, holder, ttl, {"cli": True})


def _report(ctx: Context, row: Any, as_json: bool, *, sent_only: bool = False) -> None:
    if row is None:
        click.echo("error: the action's row disappeared", err=True)
        sys.exit(EXIT_FAILED)
    final = row.status in act.FINAL
    if as_json:
        emit_json(_row_dict(row))
    elif sent_only:
        ctx.out.print(f"action #{row.id} sent: {escape(row.action)} {escape(row.target or '')} "
                      f"(`erpsync-tui actions` shows its outcome)")
    elif final:
        mark = {"done": "[green]done[/]", "failed": "[red]FAILED[/]", "expired": "[yellow]EXPIRED[/]"}[row.status]
        ctx.out.print(f"{mark} #{row.id} {escape(row.action)} {escape(row.target or '')}: "
                      f"{escape(secret_store.redact(row.result or ''))}")
    else:
        ctx.err.print(f"[yellow]timed out waiting:[/] {escape(act.describe_pending(row))}", soft_wrap=True)
    if sent_only:
        sys.exit(EXIT_OK)
    sys.exit(EXIT_OK if row.status == "done" else EXIT_FAILED)


def _row_dict(row: Any) -> dict[str, Any]:
    return {"id": row.id, "created_at": row.created_at, "actor": row.actor, "host": row.host, "action": row.action,
            "target": row.target, "params": row.params, "status": row.status, "result": row.result,
            "processed_at": row.processed_at, "processed_by": row.processed_by}


# ============================================================================================== commands


@click.command("pause")
@wait_options
@pass_ctx
def pause_command(ctx: Context, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Pause syncing (webhooks are still received and stored; a restarted engine stays paused)."""
    send(ctx, act.Pause(), no_wait=no_wait, timeout=timeout, as_json=as_json)


@click.command("resume")
@wait_options
@pass_ctx
def resume_command(ctx: Context, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Resume syncing: the queue drains."""
    send(ctx, act.Resume(), no_wait=no_wait, timeout=timeout, as_json=as_json)


@click.command("retry")
@click.argument("item_id", type=int, required=False)
@click.option("--failed", "failed_", is_flag=True, help="Failed items (waiting for their next attempt).")
@click.option("--dead", is_flag=True, help="Dead items (gave up after their last attempt).")
@filter_options
@wait_options
@pass_ctx
@handles_missing_secrets
def retry_command(ctx: Context, item_id: int | None, failed_: bool, dead: bool, error_code: str | None,
                  doctype: str | None, site: str | None, older_than: str | None, no_wait: bool, timeout: float,
                  as_json: bool) -> None:
    """Queue failed or dead items again and try them at once: one by id, or every item the filters match."""
    if item_id is not None:
        action: act.Action = act.Retry((item_id,))
    elif failed_ or dead or error_code or doctype or site or older_than:
        statuses = tuple(s for s, on in (("failed", failed_), ("dead", dead)) if on)
        action = act.RetryMatching(build_filter(statuses, error_code, doctype, site, older_than))
    else:
        raise click.UsageError("give an item id, or --failed/--dead and/or filters (--code, --doctype, --site, "
                               "--older-than)")
    send(ctx, action, no_wait=no_wait, timeout=timeout, as_json=as_json)


@click.command("discard")
@click.argument("item_id", type=int, required=False)
@click.option("--status", "statuses", multiple=True, type=click.Choice(["pending", "failed", "dead"]),
              help="Only items in this state (repeatable; default failed and dead).")
@filter_options
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (filters only).")
@wait_options
@pass_ctx
def discard_command(ctx: Context, item_id: int | None, statuses: tuple[str, ...], error_code: str | None,
                    doctype: str | None, site: str | None, older_than: str | None, yes: bool, no_wait: bool,
                    timeout: float, as_json: bool) -> None:
    """Close queue items without syncing them (state `discarded`; the action row records who and why)."""
    if item_id is not None:
        action: act.Action = act.Discard(ids=(item_id,))
    elif statuses or error_code or doctype or site or older_than:
        flt = build_filter(statuses, error_code, doctype, site, older_than)
        with ctx.database().read() as session:
            from erpsync_tui.store.queries import queue_item_ids

            count = len(queue_item_ids(session, flt))
        if not yes and not as_json:
            click.confirm(f"discard {count} items matching {flt.describe()}? They will not be synced", abort=True)
        action = act.Discard(filter=flt)
    else:
        raise click.UsageError("give an item id or filters (--status, --code, --doctype, --site, --older-than)")
    send(ctx, action, no_wait=no_wait, timeout=timeout, as_json=as_json)


@click.command("resolve")
@click.argument("conflict_id", type=int)
@click.option("--take", required=True, metavar="SITE|merged",
              help="Take one site's whole document, or 'merged' (agreeing fields plus --field choices).")
@click.option("--field", "fields", multiple=True, metavar="F=SITE", help="Per-field choice (repeatable).")
@wait_options
@pass_ctx
@handles_missing_secrets
def resolve_command(ctx: Context, conflict_id: int, take: str, fields: tuple[str, ...], no_wait: bool,
                    timeout: float, as_json: bool) -> None:
    """Resolve a conflict: write the chosen values to both sites (audited); waits for the outcome."""
    from erpsync_tui.store.models import Conflict, ConflictStatus

    config, db = ctx.config(), ctx.database()
    choices = dict(_parse_field_choice(f, config.pair) for f in fields)
    if take != "merged" and take not in config.pair:
        raise click.UsageError(f"--take must be one of {', '.join(config.pair)} or merged")
    with db.read() as session:
        conflict = session.get(Conflict, conflict_id)
    if conflict is None or conflict.status != ConflictStatus.OPEN:
        click.echo(f"error: conflict #{conflict_id} is not open", err=True)
        sys.exit(EXIT_FAILED)
    action = act.Resolve(conflict_id, None if take == "merged" else take, choices)
    send(ctx, action, no_wait=no_wait, timeout=timeout, as_json=as_json)


def _parse_field_choice(text: str, pair: tuple[str, str]) -> tuple[str, str]:
    field_name, sep, site = text.partition("=")
    if not sep or site not in pair:
        raise click.UsageError(f"--field takes FIELD=SITE with SITE one of {', '.join(pair)}, not {text!r}")
    return field_name, site


@click.command("queue")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES),
              help="Only items in this state (repeatable; default failed and dead).")
@filter_options
@click.option("--limit", default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def queue_command(ctx: Context, statuses: tuple[str, ...], error_code: str | None, doctype: str | None,
                  site: str | None, older_than: str | None, limit: int, as_json: bool) -> None:
    """List queue items (newest first) with their error code and last error."""
    from erpsync_tui.errors import quick_fix
    from erpsync_tui.store.queries import queue_items

    flt = build_filter(statuses, error_code, doctype, site, older_than)
    with ctx.database().read() as session:
        items = queue_items(session, flt=flt, limit=limit)
    rows = [{"id": i.id, "status": i.status, "kind": i.kind, "site": i.site, "doctype": i.doctype, "name": i.name,
             "attempts": i.attempts, "max_attempts": i.max_attempts, "error_code": i.error_code,
             "last_error": i.last_error, "quick_fix": quick_fix(i.error_code), "created_at": i.created_at,
             "next_attempt_at": i.next_attempt_at} for i in items]
    if as_json:
        emit_json(rows)
        return
    ctx.out.print(f"{len(rows)} items matching {escape(flt.describe())}")
    for r in rows:
        error = secret_store.redact((r["last_error"] or "").splitlines()[0] if r["last_error"] else "")[:100]
        ctx.out.print(f"#{r['id']} {r['status']:<9} {escape(str(r['site']))} {escape(str(r['doctype']))} "
                      f"{escape(str(r['name']))} tries {r['attempts']}/{r['max_attempts']} "
                      f"{r['error_code'] or ''} {escape(error)}")


@click.command("actions")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def actions_command(ctx: Context, limit: int, as_json: bool) -> None:
    """The operator actions audit trail: who, from where, what, when, and the outcome (newest first)."""
    rows = act.recent(ctx.database(), limit)
    if as_json:
        emit_json([_row_dict(r) for r in rows])
        return
    if not rows:
        ctx.out.print("no operator actions yet")
    for r in rows:
        ctx.out.print(f"#{r.id} {r.created_at:%Y-%m-%d %H:%M:%S} {escape(r.actor)}@{escape(r.host)} "
                      f"{escape(r.action)} {escape(r.target or '')}: {r.status}"
                      + (f" — {escape(secret_store.redact(r.result))}" if r.result else ""))


LEVEL_ORDER = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_since(text: str) -> Any:
    """A duration back from now (10m, 2h, 1d) or an ISO time (UTC if it has no zone) → an aware datetime."""
    from datetime import UTC, datetime, timedelta

    from erpsync_tui.store.models import utcnow

    if DURATION.match(text):
        return utcnow() - timedelta(seconds=parse_duration(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither a duration (10m, 2h, 1d) nor an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.command("logs")
@click.option("--since", metavar="DURATION|TIME", help="Only lines newer than this (10m, 2h, 1d, or an ISO time).")
@click.option("--level", type=click.Choice(LEVEL_ORDER, case_sensitive=False), help="This level and above.")
@click.option("--code", "error_code", metavar="ERPnnn", help="Only lines with this error code.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--limit", default=10_000, show_default=True, help="At most this many lines (the newest).")
@pass_ctx
def logs_command(ctx: Context, since: str | None, level: str | None, error_code: str | None, fmt: str,
                 as_json: bool, limit: int) -> None:
    """Export the sync log (the database's, as the console shows it), oldest first; secrets are redacted."""
    fmt = "json" if as_json else fmt
    import csv
    import io

    from sqlmodel import col, select

    from erpsync_tui.store.models import SyncLog

    query = select(SyncLog)
    if since:
        query = query.where(col(SyncLog.ts) >= parse_since(since))
    if level:
        query = query.where(col(SyncLog.level).in_(LEVEL_ORDER[LEVEL_ORDER.index(level.upper()):]))
    if error_code:
        query = query.where(SyncLog.error_code == error_code.upper())
    with ctx.database().read() as session:
        rows = list(reversed(session.exec(query.order_by(col(SyncLog.id).desc()).limit(limit)).all()))
    fields = ("id", "ts", "level", "site", "doctype", "name", "direction", "outcome", "error_code", "message",
              "record_id", "queue_item_id")
    data = [{f: getattr(r, f) for f in fields} for r in rows]
    if fmt == "json":
        emit_json(data)
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(data)
        click.echo(secret_store.redact(out.getvalue()), nl=False)
    else:
        for r in rows:
            code = f" {r.error_code}" if r.error_code else ""
            where = " ".join(str(x) for x in (r.site, r.doctype, r.name) if x)
            click.echo(secret_store.redact(f"{r.ts:%Y-%m-%d %H:%M:%S} {r.level:<7}{code} {where}: {r.message}"))


@click.command("support-bundle")
@click.argument("path", type=click.Path(path_type=Path))
@pass_ctx
def support_bundle_command(ctx: Context, path: Path) -> None:
    """Write a zip for a maintainer: versions, config (secrets masked), doctor, status, actions, failed items,
    recent log lines and errors. No secret goes in it."""
    from erpsync_tui import support
    from erpsync_tui.cli_config import _secret_summary

    config, db = ctx.config(), ctx.database()
    for site in config.sites:  # every secret the configuration needs is known to the redactor
        for ref in secret_store.site_refs(site):
            found = secret_store.lookup(ref)
            if found.value:
                secret_store.register_secret(found.value)
    webhook = secret_store.lookup(secret_store.WEBHOOK_REF).value
    if webhook:
        secret_store.register_secret(webhook)

    def effective() -> str:
        data = config.model_dump(mode="json")
        data["secrets"] = _secret_summary(list(config.sites))
        data["config_file"] = str(ctx.config_file())
        data["state_database_in_use"] = db.label
        return support._json(data)

    def doctor() -> str:
        from erpsync_tui.app_context import gather_credentials
        from erpsync_tui.engine import health

        credentials = gather_credentials(config, on_missing=lambda _exc: None)
        results = asyncio.run(health.run_checks(config, db, None, credentials=credentials, store=False))
        verdict = health.triage(results)
        from dataclasses import asdict

        return support._json({"checks": health.results_as_json(results), "triage": asdict(verdict)})

    def status() -> str:
        from erpsync_tui.store import queries
        from erpsync_tui.store.control import engine_status

        with db.read() as session:
            data = {"records": queries.record_counts(session), "queue": queries.queue_depth(session).by_status,
                    "conflicts": queries.open_conflict_count(session)}
        engine = engine_status(db)
        data["engine"] = {"mode": engine.mode, "holder": engine.holder, "info": engine.info}
        return support._json(data)

    def problems() -> str:
        from erpsync_tui.store.queries import QueueFilter, queue_items

        with db.read() as session:
            items = queue_items(session, flt=QueueFilter(), limit=500)
        return support._json([{"id": i.id, "status": i.status, "site": i.site, "doctype": i.doctype, "name": i.name,
                               "attempts": i.attempts, "error_code": i.error_code, "last_error": i.last_error,
                               "updated_at": i.updated_at} for i in items])

    def sync_log() -> str:
        from sqlmodel import col, select

        from erpsync_tui.store.models import SyncLog

        with db.read() as session:
            rows = session.exec(select(SyncLog).order_by(col(SyncLog.id).desc()).limit(support.LOG_LINES)).all()
        return "".join(f"{r.ts:%Y-%m-%d %H:%M:%S} {r.level} {r.error_code or ''} {r.site or ''} {r.doctype or ''} "
                       f"{r.name or ''}: {r.message}\n" for r in reversed(rows))

    parts = {
        "versions.json": lambda: support._json(support.versions()),
        "config.json": effective,
        "doctor.json": doctor,
        "status.json": status,
        "actions.json": lambda: support._json([_row_dict(r) for r in act.recent(db, 200)]),
        "queue-problems.json": problems,
        "sync-log.txt": sync_log,
        "serve.log.txt": lambda: support.tail(ctx.paths().log_dir / "serve.log"),
    }
    written = support.build(path, parts)
    ctx.out.print(f"wrote {escape(str(path))}: {', '.join(written)} (secrets masked; review before sending)")


COMMANDS = (pause_command, resume_command, retry_command, discard_command, resolve_command, queue_command,
            actions_command, logs_command, support_bundle_command)

"""`erpsync-tui test`, `sync`, `status`, `conflicts` and `reconcile`: one-shot engine work (registered in cli.py)."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
from rich.markup import escape

from erpsync_tui import secrets as secret_store
from erpsync_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    _close,
    _engine_for,
    _run_async,
    cli,
    emit_json,
    handles_missing_secrets,
    pass_ctx,
)
from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.errors import ErpSyncError

# =============================================================================================== engine


def _fail_with_code(exc: ErpSyncError) -> NoReturn:
    """A site or sync failure as one line with its code and quick fix, exit 1 — never a traceback."""
    click.echo(f"error: {secret_store.redact(str(exc))}\n  fix: {exc.quick_fix}", err=True)
    sys.exit(EXIT_FAILED)


@cli.command("test")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handles_missing_secrets
def test_command(ctx: Context, as_json: bool) -> None:
    """Connect to and authenticate with each site; failures show their error code and quick fix."""
    from erpsync_tui.engine.preflight import check_doctype
    from erpsync_tui.errors import ErrorCode, quick_fix

    engine = _engine_for(ctx)

    async def probe() -> list[dict[str, Any]]:
        results = []
        for site, connector in engine.connectors.items():
            try:
                user = await connector.whoami()
                problems = [p for p in [await check_doctype(site, connector, d) for d in engine.config.sync.doctypes]
                            if p is not None]
                if problems:
                    results.append({"site": site, "ok": False, "user": user, "error_code": problems[0].code,
                                    "error": "; ".join(p.message for p in problems), "quick_fix": problems[0].fix,
                                    "url": connector.config.base_url})
                else:
                    results.append({"site": site, "ok": True, "user": user, "url": connector.config.base_url,
                                    "doctypes": list(engine.config.sync.doctypes)})
            except Exception as exc:
                code = str(getattr(exc, "code", ErrorCode.CONNECTION))
                results.append({"site": site, "ok": False, "error_code": code, "error": str(exc),
                                "quick_fix": quick_fix(code), "url": connector.config.base_url})
        await _close(engine)
        return results

    results = _run_async(probe())
    if as_json:
        emit_json(results)
    else:
        for r in results:
            if r["ok"]:
                ctx.out.print(f"[green]ok[/]    {escape(r['site'])}: authenticated as {escape(r['user'])}; "
                              f"{len(r['doctypes'])} doctypes readable")
            else:
                ctx.out.print(f"[red]FAIL[/]  {escape(r['site'])}: {escape(r['error_code'])} "
                              f"{escape(secret_store.redact(r['error']))}\n      fix: {escape(r['quick_fix'])}")
    sys.exit(EXIT_OK if all(r["ok"] for r in results) else EXIT_FAILED)


@cli.command("sync")
@click.option("--doctype", help="Only this doctype.")
@click.option("--docname", help="Only this document (with --doctype; the name on the source site).")
@click.option("--direction", default="auto", show_default=True,
              help="auto, or <from>_to_<to> (e.g. cloud_to_local) to force one direction.")
@click.option("--limit", type=int, help="At most this many documents per doctype and site.")
@click.option("--workers", type=click.IntRange(0, 32),
              help="Run bulk batches in this many worker processes (default: sync.workers; 0: in this process).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handles_missing_secrets
def sync_command(ctx: Context, doctype: str | None, docname: str | None, direction: str, limit: int | None,
                 workers: int | None, as_json: bool) -> None:
    """Run a full sync now (resumes an interrupted one from its checkpoint)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from erpsync_tui.app_context import build_batch_pool
    from erpsync_tui.engine.bulk import full_sync, sources_for
    from erpsync_tui.engine.preflight import PreflightFailed, preflight

    if docname and not doctype:
        raise click.UsageError("--docname needs --doctype")
    engine = _engine_for(ctx)
    if not docname:
        engine.batch_pool = build_batch_pool(engine.config, engine.db.url, workers)
    try:
        sources_for(engine, direction)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def run(progress: Progress | None) -> Any:
        if engine.batch_pool is not None:
            engine.batch_pool.start()  # they boot (~1 s) while the listing starts
        task = progress.add_task("starting", total=None) if progress else None

        def report(what: str, done: int) -> None:
            if progress is not None and task is not None:
                progress.update(task, description=f"{what}: {done} documents")

        try:
            # Before any work: a wrong secret or a doctype typo stops here (ERP002/ERP003), not after 400 creates.
            problems = await preflight(engine.connectors, [doctype] if doctype else engine.config.sync.doctypes)
            if problems:
                raise PreflightFailed(problems)
            return await full_sync(engine, doctypes=[doctype] if doctype else None, docname=docname,
                                   direction=direction, limit=limit, progress=report)
        finally:
            await _close(engine)

    from erpsync_tui.store.models import utcnow

    started_at = utcnow()
    try:
        if as_json:
            summary = _run_async(run(None))
            emit_json(summary.as_dict())
        else:
            columns = (SpinnerColumn(), TextColumn("{task.description}"))
            with Progress(*columns, console=ctx.err, transient=True) as progress:
                summary = _run_async(run(progress))
    except PreflightFailed as exc:
        for problem in exc.problems:
            click.echo(f"error: {secret_store.redact(problem.render())}", err=True)
        click.echo("nothing was synced", err=True)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        _interrupted(ctx, engine.db, started_at)
    if not as_json:
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(summary.outcomes.items())) or "nothing"
        ctx.out.print(f"{summary.processed} documents in {summary.seconds:.1f}s: {escape(outcomes)}; "
                      f"{summary.writes} writes, {summary.failed} failed")
        if summary.failed:
            ctx.out.print("failed documents are on the queue: `erpsync-tui status`, `erpsync-tui retry --failed`")
    sys.exit(EXIT_FAILED if summary.failed else EXIT_OK)


def _interrupted(ctx: Context, db: Any, since: Any) -> NoReturn:
    """Ctrl-C during a sync: what this run did (from the log, which is committed per batch) and how to go on."""
    from sqlalchemy import func
    from sqlmodel import col, select

    from erpsync_tui.store.models import SyncLog

    with db.read() as session:
        rows = session.exec(select(SyncLog.outcome, func.count()).where(col(SyncLog.ts) >= since,
                                                                        col(SyncLog.outcome).is_not(None))
                            .group_by(SyncLog.outcome)).all()
    counts = ", ".join(f"{outcome} {n}" for outcome, n in sorted(rows)) or "nothing recorded yet"
    ctx.err.print(f"interrupted: this run so far: {escape(counts)}. Everything recorded is kept; run "
                  "`erpsync-tui sync` again to resume from the last checkpoint.", soft_wrap=True)
    sys.exit(130)


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--recent", default=10, show_default=True, help="How many recent operations to show.")
@pass_ctx
def status_command(ctx: Context, as_json: bool, recent: int) -> None:
    """Tracked, synced, errors, conflicts, the queue, the engine, and recent operations."""
    from erpsync_tui.store import queries
    from erpsync_tui.store.control import engine_status

    db = ctx.database()
    with db.read() as session:
        counts = queries.record_counts(session)
        depth = queries.queue_depth(session)
        conflicts = queries.open_conflict_count(session)
        logs = queries.log_tail(session, limit=recent)
    engine = engine_status(db)
    data = {
        "tracked": counts.get("tracked", 0), "synced": counts.get("synced", 0),
        "errors": depth.by_status.get("failed", 0) + depth.by_status.get("dead", 0), "conflicts": conflicts,
        "ambiguous": counts.get("ambiguous", 0),  # neither paired nor created: `erpsync-tui match` lists them
        "set_apart": counts.get("set_apart", 0),  # kept for the operator after a rename (ERP009 in the log)
        "queue": depth.by_status,
        "oldest_pending_seconds": depth.oldest_pending_age.total_seconds() if depth.oldest_pending_age else None,
        "engine": {"mode": engine.mode, "holder": engine.holder, "circuits": engine.circuits,
                   "echoes_skipped": engine.info.get("echoes_skipped")},
        "recent": [{"ts": r.ts, "level": r.level, "doctype": r.doctype, "name": r.name, "outcome": r.outcome,
                    "error_code": r.error_code, "message": r.message} for r in logs],
    }
    if as_json:
        emit_json(data)
        return
    ctx.out.print(f"engine: {engine.mode}" + (f" ({escape(engine.holder or '')})" if engine.holder else ""))
    for site, state in engine.circuits.items():
        if state != "closed":  # said loudly: a site the engine has stopped asking
            why = "answers 401 to everything: the API key was revoked or changed" if state == "auth_refused" \
                else "failed repeatedly; requests are held until it answers again"
            ctx.out.print(f"[bold red]site {escape(site)}: {state.upper()}[/] — {why} (queued items keep their "
                          "attempts)")
    ctx.out.print(f"tracked {data['tracked']} · synced {data['synced']} · errors {data['errors']} · "
                  f"conflicts {conflicts}" + (f" · ambiguous {data['ambiguous']} (see `erpsync-tui match`)"
                                              if data["ambiguous"] else "")
                  + (f" · set apart {data['set_apart']} (see `erpsync-tui logs --code ERP009`)"
                     if data["set_apart"] else ""))
    ctx.out.print("queue: " + ", ".join(f"{k} {v}" for k, v in depth.by_status.items()))
    for row in logs:
        code = f" {row.error_code}" if row.error_code else ""
        ctx.out.print(f"  {row.ts:%H:%M:%S} {row.level:<7}{code} {escape(row.message)}", markup=True)


@cli.command("conflicts")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def conflicts_command(ctx: Context, as_json: bool) -> None:
    """List open conflicts."""
    from erpsync_tui.store import queries

    with ctx.database().read() as session:
        rows = queries.open_conflicts(session)
    data = [{"id": c.id, "doctype": c.doctype, "names": c.names, "fields": c.fields, "status": c.status,
             "created_at": c.created_at} for c in rows]
    if as_json:
        emit_json(data)
        return
    if not data:
        ctx.out.print("no open conflicts")
    for c in data:
        names = ", ".join(f"{site}={name}" for site, name in c["names"].items())
        ctx.out.print(f"#{c['id']} {escape(c['doctype'])} {escape(names)}: {escape(', '.join(c['fields']))}")


@cli.command("reconcile")
@click.option("--doctype", "doctypes", multiple=True, help="Only this doctype (repeatable; default: every configured "
              "doctype).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (same as --format json).")
@click.option("--apply", "apply_", is_flag=True, help="Sync every difference through the engine, under each "
              "doctype's policy (after a dry-run summary and a confirmation).")
@click.option("--yes", is_flag=True, help="With --apply: do not ask (scripts).")
@pass_ctx
@handles_missing_secrets
def reconcile_command(ctx: Context, doctypes: tuple[str, ...], fmt: str, as_json: bool, apply_: bool,
                      yes: bool) -> None:
    """Compare doctypes across both sites: missing documents and differing fields with their values (secret-like
    fields masked). Writes nothing unless --apply."""
    from erpsync_tui.engine.reconcile import reconcile

    fmt = "json" if as_json else fmt
    config = ctx.config()
    unknown = [d for d in doctypes if d not in config.sync.doctypes]
    if unknown:
        raise click.UsageError(f"not a configured doctype: {', '.join(unknown)} (sync.doctypes: "
                               f"{', '.join(config.sync.doctypes)})")
    wanted = list(doctypes) or list(config.sync.doctypes)
    engine = _engine_for(ctx)

    async def run() -> Any:
        try:
            return [await reconcile(engine, doctype) for doctype in wanted]
        finally:
            await _close(engine)

    try:
        reports = _run_async(run())
    except ConnectorError as exc:
        _fail_with_code(exc)
    total = sum(len(r.differences) for r in reports)
    from erpsync_tui.engine.health import reconcile_names, record_reconcile

    record_reconcile(engine.db, {r.doctype: len(r.differences) for r in reports}, source="cli",
                     names=reconcile_names(reports))
    _print_reconcile(ctx, reports, fmt, dry_run=apply_)
    if apply_ and total:
        _apply_reconcile(ctx, wanted, total, yes=yes, as_json=fmt == "json")
    sys.exit(EXIT_FAILED if total and not apply_ else EXIT_OK)


def _print_reconcile(ctx: Context, reports: list[Any], fmt: str, *, dry_run: bool) -> None:
    if fmt == "json":
        if not dry_run:
            emit_json({"doctypes": [r.as_dict() for r in reports],
                       "differences": sum(len(r.differences) for r in reports)})
        return
    if fmt == "csv":
        for index, report in enumerate(reports):
            click.echo(secret_store.redact(report.as_csv(header=index == 0)), nl=False)
        return
    for report in reports:
        counts = ", ".join(f"{site} {n}" for site, n in report.counts.items())
        ctx.out.print(f"[bold]{escape(report.doctype)}[/]: {counts}; {len(report.differences)} differences")
        for diff in report.differences[:200]:
            names = ", ".join(f"{site}={name}" for site, name in diff.names.items())
            ctx.out.print(f"  {escape(diff.kind)} {escape(names)}")
            for name in diff.fields:
                sides = " · ".join(f"{site}: {secret_store.redact(repr(value))}"
                                   for site, value in diff.values.get(name, {}).items())
                ctx.out.print(f"      {escape(name)}: {escape(sides)}")
        if len(report.differences) > 200:
            ctx.out.print(f"  … {len(report.differences) - 200} more (--format json or csv lists all)")


def _apply_reconcile(ctx: Context, doctypes: list[str], total: int, *, yes: bool, as_json: bool) -> None:
    """Sent as a reconcile_apply operator action: the engine that holds the lease applies it (or this process
    when none runs), and its outcome is written to the action's row."""
    from erpsync_tui.cli_ops import send
    from erpsync_tui.store.actions import ReconcileApply

    if not yes:
        if as_json:
            raise click.UsageError("--apply with --json needs --yes (there is no one to confirm)")
        click.confirm(f"apply {total} differences in {', '.join(doctypes)} (each synced through the engine under "
                      "its doctype's policy)?", abort=True)
    send(ctx, ReconcileApply(tuple(doctypes)), no_wait=False, timeout=3600, as_json=as_json)

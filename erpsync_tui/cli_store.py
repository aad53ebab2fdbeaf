"""`erpsync-tui backup`, `restore`, `reset-state` and `match`: the state database (registered in cli.py)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from erpsync_tui import secrets as secret_store
from erpsync_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    Context,
    _close,
    _engine_for,
    _run_async,
    cli,
    emit_json,
    handles_missing_secrets,
    pass_ctx,
)

# =============================================================================================== store


@cli.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
@pass_ctx
def backup_command(ctx: Context, path: Path) -> None:
    """Copy the live state database to PATH, safe while the engine runs.

    SQLite: a single file through SQLite's online backup API. PostgreSQL: `pg_dump --format=custom` (one
    consistent snapshot; `pg_restore` reads it), or, without pg_dump here, the command to run elsewhere.
    """
    from erpsync_tui.store import StoreError, postgres
    from erpsync_tui.store.sqlite import backup

    db = ctx.database()
    if db.path is None and not postgres.is_postgres_url(db.url):
        click.echo(f"error: backup knows SQLite files and PostgreSQL, not {db.label}; use the database's own "
                   "backup tool", err=True)
        sys.exit(EXIT_USAGE)
    try:
        if db.path is not None:
            backup(db.path, path)
        else:
            postgres.backup(db.url, path)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_STORE)
    how = "" if db.path is not None else " with pg_dump (restore with pg_restore)"
    click.echo(f"backed up {db.label} to {path}{how}")


@contextlib.contextmanager
def _state_change_errors() -> Iterator[None]:
    """What restore and reset-state refuse with: an engine holding the lease (exit 1), a database or backup that
    cannot be used (exit 3), each with its message."""
    from erpsync_tui.store import StoreError
    from erpsync_tui.store.restore import EngineRunning

    try:
        yield
    except EngineRunning as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_STORE)


NEXT_AFTER_FORGETTING = "next: `erpsync-tui match` to review, then `erpsync-tui sync` (it re-pairs before it creates)"


@cli.command("restore")
@click.argument("backup_file", metavar="BACKUP", type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@pass_ctx
def restore_command(ctx: Context, backup_file: Path, yes: bool) -> None:
    """Replace the state database with BACKUP (no engine may run; a copy of the replaced one is kept).

    Then run `erpsync-tui sync`: documents the backup does not know are paired again, never created twice.
    """
    from erpsync_tui.store.restore import check_backup, refuse_while_engine_runs, restore_database

    db = ctx.database()
    if db.path is None:
        click.echo("error: restore works on SQLite; for PostgreSQL use pg_restore, then `erpsync-tui sync`", err=True)
        sys.exit(EXIT_USAGE)
    with _state_change_errors():
        version = check_backup(backup_file)
        refuse_while_engine_runs(db)
    if not yes:
        click.confirm(f"Replace the state in {db.path} with {backup_file} (schema {version})? A copy of the current "
                      "database is kept", abort=True)
    with _state_change_errors():
        copy = restore_database(db, backup_file)
    click.echo(f"restored {backup_file} into {db.path}; the replaced database is kept as {copy}\n"
               + NEXT_AFTER_FORGETTING)


@cli.command("reset-state")
@click.option("--doctype", help="Only this doctype (else every doctype).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (scripts).")
@pass_ctx
def reset_state_command(ctx: Context, doctype: str | None, yes: bool) -> None:
    """Forget which documents are paired (no engine may run; a SQLite copy is kept). Sites are untouched.

    The next `erpsync-tui sync` pairs them again by the matching rules before it creates anything.
    """
    from erpsync_tui.engine.sync_state import SyncState
    from erpsync_tui.store.restore import keep_copy, refuse_while_engine_runs

    db = ctx.database()
    with _state_change_errors():
        refuse_while_engine_runs(db)
    if not yes:
        click.confirm(f"Forget the sync state of {doctype or 'every doctype'} in {db.label}? The documents on the "
                      "sites are not touched", abort=True)
    with _state_change_errors():
        copy = keep_copy(db, "reset") if db.path is not None else None
    counts = SyncState(db).reset(doctype)
    kept = f"; the previous database is kept as {copy}" if copy else ""
    click.echo(f"reset {doctype or 'every doctype'}: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + kept
               + "\n" + NEXT_AFTER_FORGETTING)


@cli.command("match")
@click.option("--doctype", help="Only this doctype (else every synced doctype).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@pass_ctx
@handles_missing_secrets
def match_command(ctx: Context, doctype: str | None, fmt: str, as_json: bool) -> None:
    """Dry run of pairing: what the next full sync would pair (and by which rule), what is ambiguous, what it
    would create on each side, which pairs differ — and duplicates already on the sites. Writes nothing."""
    from erpsync_tui.engine.matching import MatchingFailed, plan_csv, plan_doctype, report_lines

    engine = _engine_for(ctx)
    doctypes = [doctype] if doctype else list(engine.config.sync.doctypes)

    async def run() -> list[Any]:
        try:
            return [await plan_doctype(engine, d, compare=True) for d in doctypes]
        finally:
            await _close(engine)

    try:
        plans = _run_async(run())
    except MatchingFailed as exc:
        click.echo(f"error: {secret_store.redact(str(exc))}", err=True)
        sys.exit(EXIT_FAILED)
    fmt = "json" if as_json else fmt
    if fmt == "json":
        emit_json([plan.as_dict() for plan in plans])
    elif fmt == "csv":
        click.echo(plan_csv(plans, engine.pair), nl=False)
    else:
        for line in report_lines(plans, engine.pair):
            ctx.out.print(escape(line))
    problems = any(plan.ambiguous or plan.duplicates for plan in plans)
    sys.exit(EXIT_FAILED if problems else EXIT_OK)

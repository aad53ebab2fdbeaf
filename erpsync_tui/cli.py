"""The `erpsync-tui` command line.

Layout: the top-level group and its shared context first, then one section per command family
(config, secrets, store, engine, daemon, console). A new command goes into its family's section; a
heavy import (the engine, Textual, the simulator) happens inside the command, so `--help` stays fast
and the engine never drags the console in.

Exit codes: 0 ok · 1 the operation failed (a site, a sync, a check) · 2 bad usage or configuration ·
3 the state database cannot be used.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from erpsync_tui import __version__
from erpsync_tui import secrets as secret_store
from erpsync_tui.config import (
    AppConfig,
    ConfigError,
    Paths,
    find_config_file,
    load_effective_config,
    resolve_paths,
    user_config_dir,
)
from erpsync_tui.connectors.base import ConnectorError
from erpsync_tui.errors import ErpSyncError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3
P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class Context:
    config_option: str | None
    db_option: str | None
    out: Console = field(default_factory=lambda: Console(highlight=False))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    _loaded: tuple[Path | None, AppConfig] | None = None

    def config(self) -> AppConfig:
        return self._load()[1]

    def config_file(self) -> Path | None:
        return self._load()[0]

    def _load(self) -> tuple[Path | None, AppConfig]:
        if self._loaded is None:
            try:
                self._loaded = load_effective_config(self.config_option)
            except ConfigError as exc:
                fail_config(exc)
            secret_store.load_known_secrets(list(self._loaded[1].sites))
        return self._loaded

    def paths(self) -> Paths:
        file, config = self._load()
        return resolve_paths(file, config, self.db_option)

    def database(self) -> Any:
        from erpsync_tui.store import StoreError, open_database

        try:
            return open_database(self.paths().database_url)
        except StoreError as exc:
            self.err.print(f"[bold red]error:[/] {escape(str(exc))}")
            sys.exit(EXIT_STORE)


def fail_config(exc: ConfigError) -> NoReturn:
    click.echo(exc.render(), err=True)
    sys.exit(EXIT_USAGE)


def check_keymap(ctx: Context, config: AppConfig) -> None:
    """`console.keymap` against the console's binding ids: an unknown id or a clash is a config error (exit 2)."""
    if not config.console.keymap:
        return
    from erpsync_tui.config import config_error_at
    from erpsync_tui.tui.keymap import keymap_problems

    problems = keymap_problems(config.console.keymap)
    if problems:
        fail_config(config_error_at(ctx.config_file(), problems))


def emit_json(data: Any) -> None:
    """JSON for scripts; redacted like everything else the program prints."""
    click.echo(secret_store.redact(json.dumps(data, indent=2, default=str, ensure_ascii=False)))


def operator_identity() -> tuple[str, str]:
    """Who is acting, for the audit trail: the login user and this host."""
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or os.environ.get("LOGNAME") or "unknown"
    return user, socket.gethostname()


def pass_ctx(func: Callable[P, R]) -> Callable[P, R]:
    return click.pass_obj(func)  # type: ignore[return-value]


def handles_missing_secrets(func: Callable[P, R]) -> Callable[P, R]:
    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except secret_store.MissingSecret as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper


# =============================================================================================== group


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_option", metavar="PATH", help="config.yaml to use (else $ERPSYNC_CONFIG, …).")
@click.option("--db", "db_option", metavar="URL|PATH", help="State database (SQLAlchemy URL or SQLite file).")
@click.version_option(__version__, prog_name="erpsync-tui")
@click.pass_context
def cli(click_ctx: click.Context, config_option: str | None, db_option: str | None) -> None:
    """Keep two ERPNext/Frappe sites in sync, and watch it from the terminal.

    With no command, opens the operator console.
    """
    click_ctx.obj = Context(config_option, db_option)
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(console_command)


def main() -> None:
    cli(prog_name="erpsync-tui")


# =============================================================================================== config


@cli.command("init")
@click.option("--path", type=click.Path(path_type=Path), help="Where to write (default: user config dir).")
def init_command(path: Path | None) -> None:
    """Write a starter config.yaml into the user config dir (never overwrites)."""
    target = path or user_config_dir() / "config.yaml"
    if target.exists():
        click.echo(f"error: {target} exists; not overwriting it (edit it, or pass --path)", err=True)
        sys.exit(EXIT_FAILED)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(_starter_config(), encoding="utf-8")
    click.echo(f"wrote {target}\nnext: edit the site URLs, then `erpsync-tui secrets set <site>` for each site")


def _starter_config() -> str:
    # data/config.example.yaml is a symlink to the repository's config.yaml; wheels carry its content.
    from importlib.resources import files

    return files("erpsync_tui").joinpath("data/config.example.yaml").read_text(encoding="utf-8")


@cli.group("config")
def config_group() -> None:
    """Check the configuration and show the paths in use."""


@config_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_check(ctx: Context, as_json: bool) -> None:
    """Validate config.yaml and print the effective configuration (secrets masked)."""
    config = ctx.config()
    check_keymap(ctx, config)
    effective = config.model_dump(mode="json")
    effective["secrets"] = _secret_summary(list(config.sites))
    if as_json:
        emit_json({"config_file": str(ctx.config_file()), "valid": True, "effective": effective})
        return
    from ruamel.yaml import YAML

    ctx.out.print(f"[green]ok[/]: {escape(str(ctx.config_file()))} is valid\n")
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(effective, sys.stdout)
    _warn_tls(ctx, config)


def _warn_tls(ctx: Context, config: AppConfig) -> None:
    for name, site in config.sites.items():
        if not site.verify_tls:
            ctx.err.print(
                f"[bold yellow]WARNING:[/] TLS verification is OFF for site {escape(name)}: "
                "anyone on the path can read and change synced data"
            )


def _secret_summary(sites: list[str]) -> dict[str, dict[str, str]]:
    summary: dict[str, dict[str, str]] = {}
    for site in sites:
        for ref in secret_store.site_refs(site):
            found = secret_store.lookup(ref)
            summary.setdefault(site, {})[ref.field] = f"{found.masked()} ({found.source})"
    webhook = secret_store.lookup(secret_store.WEBHOOK_REF)
    summary["webhook"] = {"secret": f"{webhook.masked()} ({webhook.source})"}
    return summary


@config_group.command("paths")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def config_paths(ctx: Context, as_json: bool) -> None:
    """Print every path in use: config, database, themes, logs."""
    file = find_config_file(ctx.config_option)
    config: AppConfig | None = None
    if file is not None and file.is_file():
        try:
            file, config = load_effective_config(str(file))
        except ConfigError as exc:
            fail_config(exc)
    paths = resolve_paths(file, config, ctx.db_option)
    rows = {
        "config_file": str(paths.config_file) if paths.config_file else "(none found)",
        "config_dir": str(paths.config_dir),
        "database": paths.database_url,
        "data_dir": str(paths.data_dir),
        "log_dir": str(paths.log_dir),
        "themes": [str(p) for p in paths.themes_dirs],
        "keyring": secret_store.keyring_name() if secret_store.keyring_available() else "none (using environment)",
    }
    if as_json:
        emit_json(rows)
        return
    for key, value in rows.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        ctx.out.print(f"{key:<12} {escape(shown)}")


# =============================================================================================== secrets


@cli.group("secrets")
def secrets_group() -> None:
    """Manage site API credentials and the webhook secret (OS keyring)."""


def _refs_for(target: str) -> tuple[secret_store.SecretRef, ...]:
    if target == secret_store.WEBHOOK:
        return (secret_store.WEBHOOK_REF,)
    return secret_store.site_refs(target)


@secrets_group.command("set")
@click.argument("target", metavar="SITE|webhook")
@pass_ctx
def secrets_set(ctx: Context, target: str) -> None:
    """Store a site's API key and secret, or the webhook secret; input is prompted, never echoed."""
    _check_target(ctx, target)
    if not secret_store.keyring_available():  # before asking anything: the answer could not be stored
        refs = _refs_for(target)
        click.echo(f"error: no working OS keyring here ({secret_store.keyring_name()}); export "
                   f"{', '.join(r.env_var for r in refs)} instead (e.g. from a systemd EnvironmentFile readable "
                   "only by the service user)", err=True)
        sys.exit(EXIT_FAILED)
    for ref in _refs_for(target):
        value = click.prompt(f"{ref.label}", hide_input=True, confirmation_prompt=ref.field != "api_key")
        try:
            secret_store.store(ref, value)
        except RuntimeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILED)
        click.echo(f"stored {ref.label} in the keyring ({secret_store.keyring_name()})")


def _check_target(ctx: Context, target: str) -> None:
    if target != secret_store.WEBHOOK and target not in ctx.config().sites:
        known = ", ".join([*ctx.config().sites, secret_store.WEBHOOK])
        click.echo(f"error: unknown site {target!r}; known: {known}", err=True)
        sys.exit(EXIT_USAGE)


@secrets_group.command("get")
@click.argument("target", metavar="SITE|webhook")
@click.option("--show", is_flag=True, help="Print the value itself instead of a masked form.")
@pass_ctx
def secrets_get(ctx: Context, target: str, show: bool) -> None:
    """Show where a secret comes from, masked unless --show."""
    _check_target(ctx, target)
    missing = False
    for ref in _refs_for(target):
        found = secret_store.lookup(ref)
        missing |= found.value is None
        shown = found.value if (show and found.value) else found.masked()
        # --show is the one deliberate exception to redaction: the operator asked for the value.
        click.echo(f"{ref.label}: {shown} (source: {found.source})")
    sys.exit(EXIT_FAILED if missing else EXIT_OK)


@secrets_group.command("delete")
@click.argument("target", metavar="SITE|webhook")
@pass_ctx
def secrets_delete(ctx: Context, target: str) -> None:
    """Remove a site's credentials or the webhook secret from the keyring."""
    _check_target(ctx, target)
    for ref in _refs_for(target):
        removed = secret_store.delete(ref)
        click.echo(f"{ref.label}: {'deleted' if removed else 'not in the keyring'}")


@secrets_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def secrets_list(ctx: Context, as_json: bool) -> None:
    """List every secret the configuration needs, where it comes from, masked."""
    summary = _secret_summary(list(ctx.config().sites))
    if as_json:
        emit_json(summary)
        return
    backend = secret_store.keyring_name() if secret_store.keyring_available() else "none"
    ctx.out.print(f"keyring backend: {escape(backend)}")
    for owner, fields in summary.items():
        for name, shown in fields.items():
            ctx.out.print(f"  {escape(owner)}.{name}: {escape(shown)}")


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
    from erpsync_tui.engine.state import SyncState
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


# =============================================================================================== engine


def _engine_for(ctx: Context) -> Any:
    """A SyncEngine on this configuration's sites and database (credentials from keyring/environment)."""
    from erpsync_tui.engine.factory import build_connectors, warn_insecure_tls
    from erpsync_tui.engine.sync import SyncEngine

    config, db = ctx.config(), ctx.database()
    for warning in warn_insecure_tls(config):
        ctx.err.print(f"[bold yellow]WARNING:[/] {escape(warning)}")
    return SyncEngine(config, db, build_connectors(config), actor="cli:" + "@".join(operator_identity()))


async def _close(engine: Any) -> None:
    if getattr(engine, "batch_workers", None) is not None:
        engine.batch_workers.close()
    for connector in engine.connectors.values():
        await connector.aclose()


def _fail_with_code(exc: ErpSyncError) -> NoReturn:
    """A site or sync failure as one line with its code and quick fix, exit 1 — never a traceback."""
    click.echo(f"error: {secret_store.redact(str(exc))}\n  fix: {exc.quick_fix}", err=True)
    sys.exit(EXIT_FAILED)


def _run_async(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)


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

    from erpsync_tui.engine.bulk import full_sync, sources_for
    from erpsync_tui.engine.factory import build_batch_workers
    from erpsync_tui.engine.preflight import PreflightFailed, preflight

    if docname and not doctype:
        raise click.UsageError("--docname needs --doctype")
    engine = _engine_for(ctx)
    if not docname:
        engine.batch_workers = build_batch_workers(engine.config, engine.db.url, workers)
    try:
        sources_for(engine, direction)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def run(progress: Progress | None) -> Any:
        if engine.batch_workers is not None:
            engine.batch_workers.start()  # they boot (~1 s) while the listing starts
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
                                              if data["ambiguous"] else ""))
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


# =============================================================================================== daemon


@cli.command("serve")
@click.option("--wait", is_flag=True, help="If another engine holds the lease, wait for it instead of exiting.")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--no-receiver", is_flag=True, help="Do not start the webhook receiver.")
@pass_ctx
@handles_missing_secrets
def serve_command(ctx: Context, wait: bool, log_level: str, no_receiver: bool) -> None:
    """Run the engine, the webhook receiver and the scheduler headless (SIGTERM/SIGINT stop it cleanly).

    `kill -USR1 <pid>` prints every thread's stack to stderr (file, line, function: no values, so no secrets):
    what a daemon that seems stuck is doing, without stopping it.
    """
    import faulthandler
    import signal

    from erpsync_tui.logsetup import configure_logging

    faulthandler.register(signal.SIGUSR1, file=sys.stderr, all_threads=True)

    log_file = ctx.paths().log_dir / "serve.log"
    configure_logging(log_level, log_file)
    config, db = ctx.config(), ctx.database()
    from erpsync_tui.engine.factory import build_connectors, warn_insecure_tls
    from erpsync_tui.engine.service import EngineService, LeaseHeld

    warn_insecure_tls(config)
    receiver = None if no_receiver or not config.webhooks.enabled else receiver_starter(log_level, log_file)
    service = EngineService(config, db, build_connectors(config), config_file=ctx.config_file(),
                            start_receiver=receiver, lease_ttl=config.scheduler.lease_ttl_seconds)
    def started() -> None:
        receiver_url = getattr(service.receiver, "url", None) or "off"
        click.echo(f"erpsync-tui serve {__version__}: config {ctx.config_file() or '(defaults)'}, database "
                   f"{db.label}, receiver {receiver_url}, log {log_file}; engine {service.state} as {service.owner} "
                   "(SIGTERM stops it)", err=True)

    try:
        code = _run_async(_serve(service, wait, on_started=started))
    except LeaseHeld as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    except OSError as exc:  # the webhook port is taken, or the host address is wrong
        click.echo(f"error: [ERP006] the webhook receiver cannot listen on {config.webhooks.host}:"
                   f"{config.webhooks.port}: {exc.strerror or exc}; fix webhooks.host/port or stop the program "
                   "holding the port", err=True)
        sys.exit(EXIT_FAILED)
    sys.exit(code)


async def _serve(service: Any, wait: bool, on_started: Callable[[], None] | None = None) -> int:
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    # A standby (`--wait`) stops at once on a signal while it waits for the lease (systemctl stop must not hang).
    starting = asyncio.ensure_future(service.start(wait_for_lease=wait))
    signalled_early = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, signalled_early}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        # stop() ends the wait (start() returns), stops the receiver a standby runs while it waits, and gives
        # back a lease the last attempt may have taken just then.
        await service.stop()
        await asyncio.gather(starting, return_exceptions=True)
        click.echo("stopped while waiting for the engine lease" if wait else "stopped while starting", err=True)
        return EXIT_OK
    signalled_early.cancel()
    starting.result()  # LeaseHeld (without --wait) or a start error goes up from here
    if on_started is not None:
        on_started()
    stopped_itself = asyncio.ensure_future(service.run_until_stopped())
    signalled = asyncio.ensure_future(stop.wait())
    await asyncio.wait({stopped_itself, signalled}, return_when=asyncio.FIRST_COMPLETED)
    await service.stop()
    signalled.cancel()
    return EXIT_OK if stop.is_set() else EXIT_FAILED  # stopping on its own means the lease was lost


def receiver_starter(log_level: str, log_file: Path | None) -> Any:
    async def start(service: Any) -> Any:
        if service.config.webhooks.workers > 0:
            return await start_receiver_workers(service, log_level, log_file)
        return await start_receiver(service)

    return start


async def start_receiver_workers(service: Any, log_level: str, log_file: Path | None) -> Any:
    """`webhooks.workers` receiver processes beside the engine's; their commits wake the queue at once."""
    from erpsync_tui.webhooks.workers import ReceiverWorkers

    secret = secret_store.lookup(secret_store.WEBHOOK_REF).value
    workers = ReceiverWorkers(service.config, service.db, webhook_secret=secret, metrics=service.metrics,
                              on_stored=service.wake, log_level=log_level, log_file=log_file)
    return await workers.start()


async def start_receiver(service: Any) -> Any:
    """The webhook receiver inside the engine's event loop; stored events wake the queue at once."""
    from erpsync_tui.webhooks import create_app, serve_receiver

    secret = secret_store.lookup(secret_store.WEBHOOK_REF).value
    config = service.config
    app = create_app(config, service.db, webhook_secret=secret, status_provider=lambda: {"engine": service.state},
                     on_stored=service.wake, metrics=service.metrics)
    return await serve_receiver(app, config.webhooks.host, config.webhooks.port)


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def doctor_command(ctx: Context, as_json: bool) -> None:
    """Run every health check, walk the triage steps, and say what to fix first."""
    from erpsync_tui.engine import health

    config, db = ctx.config(), ctx.database()
    credentials = {}
    for site in config.pair:
        try:
            creds = secret_store.site_credentials(site)
            credentials[site] = (creds.api_key, creds.api_secret)
        except secret_store.MissingSecret as exc:
            ctx.err.print(f"[yellow]note:[/] {escape(str(exc))}")
    results = _run_async(health.run_checks(config, db, None, credentials=credentials))
    verdict = health.triage(results)
    failing = any(r.status == "fail" for r in results)
    if as_json:
        emit_json({"checks": health.results_as_json(results), "triage": _verdict_dict(verdict), "ok": not failing})
    else:
        _print_checks(ctx, results, verdict)
    sys.exit(EXIT_FAILED if failing else EXIT_OK)


def _verdict_dict(verdict: Any) -> dict[str, Any]:
    from dataclasses import asdict, is_dataclass

    return asdict(verdict) if is_dataclass(verdict) else dict(vars(verdict))


def _print_checks(ctx: Context, results: list[Any], verdict: Any) -> None:
    marks = {"ok": "[green]ok  [/]", "warn": "[yellow]WARN[/]", "fail": "[red]FAIL[/]"}
    for r in results:
        code = f" {r.error_code}" if r.error_code and r.status != "ok" else ""
        ctx.out.print(f"{marks.get(r.status, r.status)} {escape(r.check)} {escape(r.target)}: "
                      f"{escape(str(r.value))}{code}")
        if r.status != "ok" and r.quick_fix:
            ctx.out.print(f"       fix: {escape(r.quick_fix)}")
    ctx.out.print(f"\ntriage: {escape(str(getattr(verdict, 'summary', verdict)))}")


# =============================================================================================== console & demo


@cli.command("console")
@click.option("--readonly", is_flag=True, help="Disable every action that changes anything.")
@click.option("--theme", help="Theme name (overrides console.theme).")
@pass_ctx
@handles_missing_secrets
def console_command(ctx: Context, readonly: bool = False, theme: str | None = None) -> None:
    """Open the operator console (the default command); attaches to a running `serve` if there is one."""
    from erpsync_tui.engine.factory import build_connectors, warn_insecure_tls
    from erpsync_tui.engine.service import EngineService
    from erpsync_tui.store.control import engine_status
    from erpsync_tui.tui.app import run_console

    config = ctx.config()
    check_keymap(ctx, config)
    db = ctx.database()
    warn_insecure_tls(config)
    factory = None
    if not readonly and engine_status(db).mode == "stopped":
        connectors = build_connectors(config)  # credentials are checked before the screen opens

        def factory() -> EngineService:
            receiver = start_receiver if config.webhooks.enabled else None
            return EngineService(config, db, connectors, config_file=ctx.config_file(), start_receiver=receiver,
                                 lease_ttl=config.scheduler.lease_ttl_seconds)

    sys.exit(run_console(db, config, engine_factory=factory, readonly=readonly, theme=theme))


@cli.command("demo")
@click.option("--seed", "seed_docs", default=40, show_default=True, help="Customers and items seeded per site.")
@click.option("--traffic", default=1.0, show_default=True, help="Edits per second on the simulated sites.")
@click.option("--theme", help="Theme name.")
@click.option("--headless", is_flag=True, help="No console: run the demo for --seconds and print the status.")
@click.option("--seconds", default=20.0, show_default=True, help="With --headless: how long to run.")
def demo_command(seed_docs: int, traffic: float, theme: str | None, headless: bool, seconds: float) -> None:
    """Two simulated sites with live traffic, an engine syncing them, and the console — one command."""
    from erpsync_tui.demo import run_demo

    sys.exit(run_demo(seed_docs=seed_docs, traffic=traffic, theme=theme, headless=headless, seconds=seconds))


def _register_layer_commands() -> None:
    """Commands defined beside their own layer register here, so cli.py stays the one index of commands."""
    from erpsync_tui.cli_ops import COMMANDS
    from erpsync_tui.sim.cli import sim_command

    cli.add_command(sim_command, "sim")
    for command in COMMANDS:  # pause, resume, retry, discard, resolve, queue, actions (typed operator actions)
        cli.add_command(command)


_register_layer_commands()

"""The `erpsync-tui` command line.

Layout: the top-level group and its shared context first, then one section per command family
(config, secrets, store, engine, daemon, console). A new command goes into its family's section; a
heavy import (the engine, Textual, the simulator) happens inside the command, so `--help` stays fast
and the engine never drags the console in.

Exit codes: 0 ok · 1 the operation failed (a site, a sync, a check) · 2 bad usage or configuration ·
3 the state database cannot be used.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
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
    """Copy the live SQLite state database to PATH (online backup API; safe while the engine runs)."""
    from erpsync_tui.store import StoreError
    from erpsync_tui.store.sqlite import backup

    db = ctx.database()
    if db.path is None:
        click.echo("error: backup works on SQLite; use pg_dump for PostgreSQL", err=True)
        sys.exit(EXIT_USAGE)
    try:
        backup(db.path, path)
    except StoreError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_STORE)
    click.echo(f"backed up {db.path} to {path}")


# =============================================================================================== console & demo


@cli.command("console")
@click.option("--readonly", is_flag=True, help="Disable every action that changes anything.")
@click.option("--theme", help="Theme name (overrides console.theme).")
@pass_ctx
def console_command(ctx: Context, readonly: bool = False, theme: str | None = None) -> None:
    """Open the operator console (the default command)."""
    click.echo(
        "The operator console is not built yet (issue 6). Available now: "
        "`erpsync-tui config check`, `secrets`, `backup`; run `erpsync-tui --help`.",
        err=True,
    )
    sys.exit(EXIT_FAILED)


@cli.command("demo")
def demo_command() -> None:
    """Start two simulated sites with live traffic, an engine, and the console — one command."""
    click.echo(
        "The demo needs the simulator (issue 3), the sync engine (issue 4) and the console (issue 6); "
        "they are not built yet, so there is nothing to show.",
        err=True,
    )
    sys.exit(EXIT_FAILED)


def _register_optional_commands() -> None:
    """Commands that live in their own layers register here, so cli.py stays the one index of commands."""
    try:
        from erpsync_tui.sim.cli import sim_command
    except ImportError:
        return
    cli.add_command(sim_command, "sim")


_register_optional_commands()

"""What every command family of the command line shares: the `cli` group, its context, the exit codes, the
output and failure helpers, and the engine a one-shot command runs.

cli.py is the index (it imports the families so that their commands register on `cli`); each family
(cli_config, cli_store, cli_engine, cli_daemon, cli_ops) imports only this module of the command line's own,
so the command line has no import loop (tests/test_import_cycles.py).
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
    load_effective_config,
    resolve_paths,
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
        console = cli.get_command(click_ctx, "console")  # registered by cli_daemon.py
        assert console is not None
        click_ctx.invoke(console)


# =============================================================================================== one-shot engine


def _engine_for(ctx: Context) -> Any:
    """A SyncEngine on this configuration's sites and database (credentials from keyring/environment)."""
    from erpsync_tui.app_context import build_engine, warn_insecure_tls

    config, db = ctx.config(), ctx.database()
    for warning in warn_insecure_tls(config):
        ctx.err.print(f"[bold yellow]WARNING:[/] {escape(warning)}")
    return build_engine(config, db, actor="cli:" + "@".join(operator_identity()))


async def _close(engine: Any) -> None:
    if getattr(engine, "batch_pool", None) is not None:
        engine.batch_pool.close()
    for connector in engine.connectors.values():
        await connector.aclose()


def _run_async(coro: Any) -> Any:
    import asyncio

    return asyncio.run(coro)

"""The `erpsync-tui` command line.

Layout: this module holds the top-level group, its shared context and helpers, and the index of commands
(`_register_layer_commands`); each command family lives in a module of its own — cli_config.py (init,
config, secrets), cli_store.py (backup, restore, reset-state, match), cli_engine.py (test, sync, status,
conflicts, reconcile), cli_daemon.py (serve, doctor, console, demo), cli_ops.py (operator actions, logs,
support bundle). Commands parse arguments and print; what they run is built by app_context.py. A new
command goes into its family's module; a heavy import (the engine, Textual, the simulator) happens inside
the command, so `--help` stays fast and the engine never drags the console in.

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
        from erpsync_tui.cli_daemon import console_command

        click_ctx.invoke(console_command)


def main() -> None:
    cli(prog_name="erpsync-tui")


def _register_layer_commands() -> None:
    """Commands defined beside their own layer register here, so cli.py stays the one index of commands."""
    # Each of these modules registers its commands on `cli` as it is imported (`@cli.command`).
    from erpsync_tui import cli_config, cli_daemon, cli_engine, cli_store  # noqa: F401
    from erpsync_tui.cli_ops import COMMANDS
    from erpsync_tui.sim.cli import sim_command

    cli.add_command(sim_command, "sim")
    for command in COMMANDS:  # pause, resume, retry, discard, resolve, queue, actions (typed operator actions)
        cli.add_command(command)


_register_layer_commands()

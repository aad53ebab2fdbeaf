"""The `erpsync-tui` command line.

Layout: this module is the index of commands (`_register_layer_commands`). The top-level group, its shared
context and helpers are in cli_common.py, the one module of the command line that the families import. Each
command family lives in a module of its own — cli_config.py (init, config, secrets), cli_store.py (backup,
restore, reset-state, match), cli_engine.py (test, sync, status, conflicts, reconcile), cli_daemon.py (serve,
doctor, console, demo), cli_ops.py (operator actions, logs, support bundle). Commands parse arguments and
print; what they run is built by app_context.py. A new command goes into its family's module; a heavy import
(the engine, Textual, the simulator) happens inside the command, so `--help` stays fast and the engine never
drags the console in.

Exit codes: 0 ok · 1 the operation failed (a site, a sync, a check) · 2 bad usage or configuration ·
3 the state database cannot be used.
"""

from __future__ import annotations

from erpsync_tui.cli_common import (  # noqa: F401  (re-exported: `from erpsync_tui.cli import cli` in scripts and tests)
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
    Context,
    cli,
)


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

"""`erpsync-tui serve`, `doctor`, `console` and `demo`: the long-running parts (registered in cli.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
from rich.markup import escape

from erpsync_tui import __version__
from erpsync_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    _run_async,
    check_keymap,
    cli,
    emit_json,
    handles_missing_secrets,
    pass_ctx,
)

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
    from erpsync_tui.app_context import build_service, receiver_starter, warn_insecure_tls
    from erpsync_tui.engine.service import LeaseHeld

    warn_insecure_tls(config)
    receiver = None if no_receiver or not config.webhooks.enabled else receiver_starter(log_level, log_file)
    service = build_service(config, db, config_file=ctx.config_file(), start_receiver=receiver)
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


@cli.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def doctor_command(ctx: Context, as_json: bool) -> None:
    """Run every health check, walk the triage steps, and say what to fix first."""
    from erpsync_tui.app_context import gather_credentials
    from erpsync_tui.engine import health

    config, db = ctx.config(), ctx.database()
    def note(exc: Exception) -> None:
        ctx.err.print(f"[yellow]note:[/] {escape(str(exc))}")

    credentials = gather_credentials(config, on_missing=note)
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
    from erpsync_tui.app_context import build_connectors, build_service, start_receiver, warn_insecure_tls
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
            return build_service(config, db, connectors=connectors, config_file=ctx.config_file(),
                                 start_receiver=receiver)

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

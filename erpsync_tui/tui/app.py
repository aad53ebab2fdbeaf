"""The operator console: `ConsoleApp` and `run_console`, the entry point the CLI calls.

Every command the console gives goes through the database (`actions.submit`, the typed path the CLI takes
too), so a console running the engine in-process and one attached to a `serve` daemon elsewhere behave the
same. The one direct call: the health screen's `r` runs the checks on the in-process engine's own loop with its
live connectors (`_rerun_checks`); attached or read-only, it runs them here and stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import signal
import socket
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from textual import work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import get_current_worker

from erpsync_tui.config import AppConfig
from erpsync_tui.engine.service import EngineService, EngineThread, LeaseHeld
from erpsync_tui.store import actions, control
from erpsync_tui.store.control import EngineStatus
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import SyncLog, utcnow
from erpsync_tui.tui import data
from erpsync_tui.tui.commands import COMMANDS, SCREENS, ConsoleCommands, command_lines, find_command
from erpsync_tui.tui.modals import HelpScreen, PromptScreen, help_lines
from erpsync_tui.tui.render import conflict_number
from erpsync_tui.tui.safe import neutralise
from erpsync_tui.tui.screens.actions import ActionsScreen
from erpsync_tui.tui.screens.conflicts import ConflictsScreen
from erpsync_tui.tui.screens.dashboard import DashboardScreen
from erpsync_tui.tui.screens.health import HealthScreen
from erpsync_tui.tui.screens.logs import LogsScreen
from erpsync_tui.tui.screens.matching import MatchingScreen
from erpsync_tui.tui.screens.queue import QueueScreen
from erpsync_tui.tui.themes import DEFAULT_THEME, load_themes

log = logging.getLogger("erpsync.tui")

ACTION_WAIT_SECONDS = 120.0  # how long the console watches a submitted action for its outcome
PREWARM_ORDER = ("conflicts", "queue")  # mounted ahead of their first visit: the screens operators act on
PREWARM_DELAY_SECONDS = 0.3  # after the dashboard's first frame
PREWARM_STEP_SECONDS = 0.15
MUTATING_ACTIONS = frozenset(control.ACTIONS)


class ConsoleApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "erpsync-tui"
    ENABLE_COMMAND_PALETTE = True
    COMMANDS: ClassVar[set[Any]] = {ConsoleCommands, *App.COMMANDS}
    MODES: ClassVar[dict[str, Any]] = {"dashboard": DashboardScreen, "conflicts": ConflictsScreen,
                                       "queue": QueueScreen, "logs": LogsScreen, "health": HealthScreen,
                                       "matching": MatchingScreen, "actions": ActionsScreen}
    # Classes on the Screen for layouts that follow the terminal (app.tcss: Screen.-short …, Screen.-wide …).
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (80, "-normal"), (140, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (24, "-normal-height"), (40, "-tall")]
    DEFAULT_MODE: ClassVar[str] = "dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, tooltip="leave (the in-process engine stops)"),
        Binding("question_mark", "help", "Help", id="help", tooltip="every key of this screen"),
        Binding("colon", "command_line", "Cmd", id="command_line", tooltip=": then a screen name or command"),
        Binding("P", "toggle_pause", "Pause/Resume", id="pause_resume"),
        Binding("space", "toggle_pause", "Pause/Resume", id="pause_resume_space", show=False),
        Binding("S", "sync_now", "Sync now", id="sync_now", show=False),
        Binding("f2", "show('dashboard')", "Dashboard", id="screen_dashboard", show=False),
        Binding("f3", "show('conflicts')", "Conflicts", id="screen_conflicts", show=False),
        Binding("f4", "show('queue')", "Queue", id="screen_queue", show=False),
        Binding("f5", "show('logs')", "Logs", id="screen_logs", show=False),
        Binding("f6", "show('health')", "Health", id="screen_health", show=False),
        Binding("f7", "show('actions')", "Actions", id="screen_actions", show=False),
    ]

    def __init__(
        self,
        db: Database,
        config: AppConfig,
        *,
        mode: str = "attached",
        readonly: bool = False,
        theme: str | None = None,
        actor: str = "operator",
        host: str = "localhost",
        now: Callable[[], datetime] = utcnow,
        engine_thread: EngineThread | None = None,
        prewarm: bool = True,
        about: str = "",
    ) -> None:
        super().__init__()
        self.prewarm = prewarm
        self.about = about  # shown at the top of `?`: e.g. the demo's database path and site URLs
        self.db, self.config, self.mode, self.readonly = db, config, mode, readonly
        self.actor, self.host, self.now = actor, host, now
        self.engine_thread = engine_thread
        self.engine: EngineStatus | None = None  # the latest status any screen read
        self.pair: tuple[str, str] = config.pair
        self.submitted: list[int] = []  # OperatorAction ids this console wrote
        self.console_themes = load_themes()
        for loaded in self.console_themes.values():
            self.register_theme(loaded)
        self.use_theme(theme or config.console.theme, quiet=True)
        self.set_keymap(dict(config.console.keymap))

    # ------------------------------------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        self._install_hangup_handler()
        if self.prewarm:
            self.set_timer(PREWARM_DELAY_SECONDS, self._prewarm_next)

    def _prewarm_next(self) -> None:
        """Compose and mount the next screen not yet visited, in the background, one per idle moment.

        A first visit otherwise pays for composing, styling and the footer (~240 ms measured): mounted ahead
        of time, the visit only switches to it (see bench/bench_console.py). Each screen then loads its data
        too, so the first conflict's diff is ready when `c` is pressed.
        """
        waiting = [mode for mode in PREWARM_ORDER if mode not in self._screen_stacks]
        if not waiting:
            return
        # Textual mounts a mode's screen when it is first switched to; _init_mode is that step alone.
        self._init_mode(waiting[0])
        self.call_after_refresh(self._mark_styled, waiting[0])
        self.set_timer(PREWARM_STEP_SECONDS, self._prewarm_next)

    def _mark_styled(self, mode: str) -> None:
        """Tell Textual a prewarmed screen is styled with the current stylesheet.

        switch_mode re-parses and re-applies the whole stylesheet (refresh_css) when the screen's CSS update
        count lags the app's, as it does for a screen never shown (-1): a quarter of a first visit's time in a
        profile, for nothing, since mounting styled it. Any later stylesheet change (a theme) still refreshes.
        """
        for screen in self._screen_stacks.get(mode, []):
            if screen.is_mounted:
                screen._css_update_count = self._css_update_count

    def on_unmount(self) -> None:
        self._remove_hangup_handler()

    def _install_hangup_handler(self) -> None:
        """A dropped SSH session sends SIGHUP; Textual does not handle it, so exit cleanly ourselves.

        `run_console` stops the in-process engine after `run()` returns, giving back its lease and items.
        """
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self._hang_up)
            loop.add_signal_handler(signal.SIGTERM, self._hang_up)

    def _remove_hangup_handler(self) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop = asyncio.get_running_loop()
            loop.remove_signal_handler(signal.SIGHUP)
            loop.remove_signal_handler(signal.SIGTERM)

    def _hang_up(self) -> None:
        log.info("terminal hung up; leaving the console")
        self.exit(return_code=0)

    # ------------------------------------------------------------------------------------------ themes

    def use_theme(self, name: str, *, quiet: bool = False) -> None:
        if name in self.available_themes:  # ours and Textual's built-in themes
            self.theme = name
            return
        fallback = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
        self.theme = fallback
        if not quiet:
            self.notify(f"unknown theme {name!r}; using {fallback}", severity="warning", markup=False)
        else:
            log.warning("unknown theme %r; using %s", name, fallback)

    # ------------------------------------------------------------------------------------------ navigation

    def action_show(self, screen: str) -> None:
        if screen not in SCREENS:
            self.notify(f"no screen called {screen!r}", markup=False)
            return
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)  # a screen key pressed while reading help: leave help, then go
        self.switch_mode(screen)

    def screen_of(self, name: str) -> Any:
        return self.get_screen_stack(name)[0]

    def action_back(self) -> None:
        if self.current_mode != "dashboard":
            self.switch_mode("dashboard")

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        bindings = self.screen.active_bindings
        displays = {key: (active.binding.key_display or self.get_key_display(active.binding))
                    for key, active in bindings.items()}
        self.push_screen(HelpScreen(self.current_mode, help_lines(bindings, displays), commands=command_lines(),
                                    about=self.about))

    def action_command_line(self) -> None:
        names = ", ".join(c.name + (f" {c.takes_argument}" if c.takes_argument else "") for c in COMMANDS)
        self.push_screen(PromptScreen(":", placeholder="a screen (dashboard conflicts queue logs health actions) or "
                                      "a command — :help lists them", hint=names), self._run_command_line)

    def _run_command_line(self, text: str | None) -> None:
        if not text or not text.strip():
            return
        self.run_command_line(text)

    def run_command_line(self, text: str) -> bool:
        word, _, argument = text.strip().lstrip(":").partition(" ")
        command = find_command(word)
        if command is None:
            self.notify(f"unknown command {neutralise(word)!r}; try : then help", severity="warning", markup=False)
            return False
        command.run(self, argument)
        return True

    def jump_to(self, row: SyncLog) -> None:
        self._find_jump_target(row.record_id, row.queue_item_id, conflict_number(row))

    @work(thread=True, exit_on_error=False, group="jump")
    def _find_jump_target(self, record_id: int | None, item_id: int | None, number: int | None) -> None:
        """The line's open conflict (named in its text, or its record's), else its queue item."""
        conflict_id = None
        note = ""
        if number is not None:
            named = data.conflict(self.db, number)
            if named is not None and named.status in ("open", "resolving"):
                conflict_id = number
            elif named is not None:
                note = f"conflict #{number} is {named.status}" + (f" (by {named.resolved_by})"
                                                                  if named.resolved_by else "")
        if conflict_id is None and record_id:
            conflict_id = data.open_conflict_for(self.db, record_id)
        self.call_from_thread(self._jump, conflict_id, item_id, note)

    def _jump(self, conflict_id: int | None, item_id: int | None, note: str = "") -> None:
        if note and conflict_id is None:
            self.notify(neutralise(note), markup=False)
        if conflict_id is not None:
            self.action_show("conflicts")
            self.screen_of("conflicts").select_conflict(conflict_id)
        elif item_id is not None:
            self.action_show("queue")
            self.screen_of("queue").focus_item(item_id)
        elif not note:
            self.notify("this line has no open conflict or queue item to jump to")

    # ------------------------------------------------------------------------------------------ engine actions

    def refuse_if_readonly(self, action: str) -> bool:
        """In read-only mode say so and return True — before any confirmation is asked, not after it."""
        if self.readonly:
            self.notify(f"read-only console: {action} refused (nothing was sent to the engine)", severity="warning",
                        markup=False)
        return self.readonly

    def submit(self, action: str, params: dict[str, Any], *, target: str | None = None) -> bool:
        """Write an OperatorAction for the engine (never in read-only mode) and report its result when done."""
        if self.refuse_if_readonly(action):
            return False
        self._submit(action, params, target)
        return True

    @work(thread=True, exit_on_error=False, group="actions")
    def _submit(self, action: str, params: dict[str, Any], target: str | None) -> None:
        # The typed path the CLI takes too (store/actions.py): same kind, params and target in the row.
        try:
            typed = actions.parse(action, params)
        except ValueError as exc:
            self.call_from_thread(self.notify, neutralise(f"{action}: {exc}"), severity="error", markup=False)
            return
        action_id = actions.submit(self.db, typed, actor=self.actor, host=self.host)
        self.submitted.append(action_id)
        running = (self.engine is None) or self.engine.mode != "stopped"
        note = "" if running else " — no engine is running; it waits until one starts"
        self.call_from_thread(self.notify, f"{action} sent (#{action_id}){note}", markup=False, timeout=3)
        deadline = time.monotonic() + ACTION_WAIT_SECONDS
        worker = get_current_worker()
        while time.monotonic() < deadline and not worker.is_cancelled:
            row = control.action_row(self.db, action_id)
            if row is not None and row.status in actions.FINAL:  # not "running": its outcome is still to come
                severity = "information" if row.status == "done" else "error"
                self.call_from_thread(self.notify, neutralise(f"{action}: {row.result or row.status}"),
                                      severity=severity, markup=False, timeout=6)
                return
            time.sleep(0.2)

    def action_toggle_pause(self) -> None:
        paused = self.engine is not None and self.engine.mode == "paused"
        self.submit("resume" if paused else "pause", {}, target="engine")

    def action_sync_now(self) -> None:
        if self.readonly:
            self.submit("sync_now", {})
            return
        doctypes = ", ".join(self.config.sync.doctypes)
        self.push_screen(PromptScreen("Sync now — doctype (empty = all)", placeholder=doctypes,
                                      hint=f"configured: {doctypes}"),
                         lambda text: text is not None and self.sync_now(text.strip() or None))

    def sync_now(self, doctype: str | None) -> None:
        self.submit("sync_now", {"doctype": doctype}, target=doctype or "all doctypes")

    def action_rerun_checks(self) -> None:
        self.notify("running health checks…", timeout=2)
        self._rerun_checks()

    @work(thread=True, exclusive=True, exit_on_error=False, group="checks")
    def _rerun_checks(self) -> None:
        """In-process: on the engine's loop with its live connectors, results stored as usual.

        Attached (or read-only): run here with temporary connectors and do not store the results, so this
        console never writes over what the daemon's own health job records.
        """
        from erpsync_tui.engine import health

        started = utcnow()
        thread = self.engine_thread
        service: EngineService | None = getattr(thread, "service", None)
        loop = getattr(thread, "_loop", None)
        try:
            if service is not None and loop is not None and not self.readonly and service.state != "stopped":
                future = asyncio.run_coroutine_threadsafe(health.run_checks(self.config, self.db,
                                                                            service.connectors), loop)
                future.result(timeout=60)
                self.call_from_thread(self._checks_done, None)
            else:
                results = asyncio.run(health.run_checks(self.config, self.db, None, credentials=_credentials(
                    self.config), store=False))
                self.call_from_thread(self._checks_done, results, started)
        except Exception as exc:
            self.call_from_thread(self.notify, f"checks failed: {type(exc).__name__}: {exc}", severity="error",
                                  markup=False)

    def _checks_done(self, local: list[Any] | None, started: datetime | None = None) -> None:
        screen = self.screen_of("health") if "health" in self._screen_stacks else None
        if screen is not None:
            if local is not None:
                screen.show_local(local, started)
            else:
                screen.local_results = None
                screen.poll_now()
        self.notify("health checks finished" + (" (local run, not stored)" if local is not None else ""), timeout=3)


def _credentials(config: AppConfig) -> dict[str, tuple[str, str]]:
    """Credentials for an attached console's own health run; a site without them reports "no credentials"."""
    from erpsync_tui.app_context import gather_credentials

    return gather_credentials(config, on_missing=lambda _exc: None)


def run_console(
    db: Database,
    config: AppConfig,
    *,
    engine_factory: Callable[[], EngineService] | None,
    readonly: bool = False,
    theme: str | None = None,
    about: str = "",
) -> int:
    """Open the console; with `engine_factory`, run the engine in-process unless a `serve` holds the lease.

    A read-only console never starts an engine (it is a viewer; the engine writes). Whatever ends the console —
    ctrl+q, SIGHUP from a dropped SSH session, SIGTERM, an exception — the in-process engine is stopped,
    giving back its lease and in-flight items.
    """
    thread: EngineThread | None = None
    mode = "attached"
    if engine_factory is not None and not readonly:
        candidate = EngineThread(engine_factory)
        try:
            candidate.start()
            thread, mode = candidate, "in-process"
        except LeaseHeld as exc:
            log.info("engine runs elsewhere; attaching: %s", exc)
    app = ConsoleApp(db, config, mode=mode, readonly=readonly, theme=theme, actor=getpass.getuser(),
                     host=socket.gethostname(), engine_thread=thread, about=about)
    try:
        app.run(mouse=config.console.mouse)
    finally:
        if thread is not None:
            thread.stop()
    return app.return_code or 0


__all__ = ["ConsoleApp", "run_console"]

"""What every console screen shares: the engine header, polling without overlap, and `escape` back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ScreenStackError
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState

from erpsync_tui.store.control import EngineStatus

if TYPE_CHECKING:
    from erpsync_tui.tui.app import ConsoleApp

CIRCUIT_LABEL = {"closed": ("✓", "", "green"), "open": ("✗", "OPEN", "bold red"),
                 "half_open": ("~", "half-open", "yellow"), "auth_refused": ("✗", "KEY REFUSED", "bold red")}
SMALL = (80, 24)  # below this the console says what it hides
MODE_LABEL = {"running": ("▶", "RUNNING", "bold green"), "paused": ("‖", "PAUSED", "bold yellow"),
              "stopped": ("■", "STOPPED", "bold red")}


def header_text(status: EngineStatus | None, *, mode: str, readonly: bool, screen: str, width: int = 80) -> Text:
    """Engine state, circuits, where the engine runs, then the screen's name if it fits — on ONE line.

    Words and symbols carry the meaning (RUNNING, ✗OPEN), never colour alone (NO_COLOR, colour blindness).
    Where the engine runs is said at the length that fits: in full, then shorter, then as one word.
    """
    for detail in range(3):
        text = Text(" READ-ONLY ", style="bold reverse") if readonly else Text()
        text.append(" ")
        text.append_text(_engine_text(status, mode, detail))
        if text.cell_len <= width:
            break
    badge = f" {screen} "
    if text.cell_len + len(badge) + 1 <= width:
        text.append(" " * (width - text.cell_len - len(badge)))
        text.append(badge, style="bold reverse")
    return text


def _engine_text(status: EngineStatus | None, mode: str, detail: int = 0) -> Text:
    text = Text()
    if status is None:
        text.append("engine …")
        return text
    symbol, word, style = MODE_LABEL.get(status.mode, ("?", status.mode.upper(), "bold"))
    text.append(f"{symbol} {word}", style=style)
    for site, state in sorted(status.circuits.items()):
        mark, label, style = CIRCUIT_LABEL.get(state, ("?", state, ""))
        text.append(" │ " if site == min(status.circuits) else " ")
        text.append(site)  # site names come from config.yaml (validated identifiers), not from an ERP
        text.append(f" {mark}{label}", style=style)
    text.append(" │ ")
    if mode == "in-process":
        text.append(("in-process engine", "in-process", "local")[detail])
    elif status.mode == "stopped":
        text.append(("attached · no engine running", "no engine", "no engine")[detail], style="bold red")
    else:
        host = status.hostname or "?"
        text.append((f"attached to serve on {host} pid {status.pid or '?'}",
                     f"serve@{host[:16]}{'…' if len(host) > 16 else ''}", "attached")[detail])
    return text


class EngineHeader(Static):
    """The top line of every screen."""


def top_bar() -> Iterator[Static]:
    """The header and, below 80×24, the note on what a small terminal hides: the top of every screen."""
    yield EngineHeader(id="header")
    yield Static(id="small-note")


class PollingScreen(Screen[None]):
    """Loads its data in a thread worker, shows it, then re-arms one timer: polls never overlap.

    While another screen (a modal, or another area) is on top, ticks are skipped without touching the
    database; the screen polls at once when it comes back.
    """

    SCREEN_NAME: ClassVar[str] = "screen"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.back", "Back", id="back", show=False),
    ]

    class Loaded(Message):
        def __init__(self, status: EngineStatus, data: Any) -> None:
            super().__init__()
            self.status, self.data = status, data

    def __init__(self) -> None:
        super().__init__(id=f"screen-{self.SCREEN_NAME}")
        self._timer: Timer | None = None
        self._loading = False
        self.loads = 0  # completed loads (tests wait on it)

    @property
    def console_app(self) -> ConsoleApp:
        return cast("ConsoleApp", self.app)  # no runtime import of tui.app: it imports the screens (import loop)

    def on_mount(self) -> None:
        self.call_after_refresh(self.update_small_note)
        self.poll_now()

    def on_resize(self) -> None:
        self.update_small_note()

    def update_small_note(self) -> None:
        """Below 80×24 say what the terminal hides; the footer goes compact so the screen's own keys fit."""
        width, height = self.size
        small = width < SMALL[0] or height < SMALL[1]
        for footer in self.query(Footer):
            footer.compact = width < 120
        notes = self.query("#small-note")
        if not notes:
            return
        note = notes.first(Static)
        note.set_class(small, "-shown")
        if small:
            note.update(Text(f" {width}×{height} < {SMALL[0]}×{SMALL[1]}: columns, keys cut — ? all keys, "
                             "enter full text", style="bold"))

    def on_screen_resume(self) -> None:
        self.poll_now()

    def poll_now(self) -> None:
        if self._loading:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._loading = True
        self._load()

    def _tick(self) -> None:
        self._timer = None
        if not self._on_top():
            self._rearm()  # a modal or another screen is on top: no database work, just wait
            return
        self.poll_now()

    def _on_top(self) -> bool:
        try:
            return self.app.screen is self
        except ScreenStackError:  # between modes for a moment while the app switches screens
            return False

    def _rearm(self) -> None:
        if self._timer is None:
            self._timer = self.set_timer(self.console_app.config.console.refresh_seconds, self._tick)

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def _load(self) -> None:
        status, data = self.fetch()
        self.post_message(self.Loaded(status, data))

    def fetch(self) -> tuple[EngineStatus, Any]:
        """Runs in a worker thread: read everything this screen shows. Override."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Runs on the UI thread with what `fetch` returned. Override."""

    def on_polling_screen_loaded(self, message: PollingScreen.Loaded) -> None:
        self.console_app.engine = message.status
        self.query_one(EngineHeader).update(
            header_text(message.status, mode=self.console_app.mode, readonly=self.console_app.readonly,
                        screen=self.SCREEN_NAME.capitalize(), width=self.size.width)
        )
        self.show(message.data)
        self.loads += 1

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "poll" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                WorkerState.CANCELLED):
            return
        self._loading = False
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"refresh failed: {type(error).__name__}: {error}", severity="error", markup=False,
                        timeout=5)
        self._rearm()

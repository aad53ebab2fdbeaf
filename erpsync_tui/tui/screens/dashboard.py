"""The default screen: engine state, queue depth and throughput, open conflicts, health, the log tail."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, RichLog, Sparkline, Static

from erpsync_tui.engine.lease import REJECTION_WINDOW_SECONDS
from erpsync_tui.store import queries
from erpsync_tui.store.control import EngineStatus
from erpsync_tui.store.models import QueueStatus
from erpsync_tui.tui import data
from erpsync_tui.tui.health_view import health_views
from erpsync_tui.tui.render import health_summary, log_line, rejected_webhooks_line
from erpsync_tui.tui.screens.base import PollingScreen, top_bar

LOG_LINES_KEPT = 1000
QUEUE_ROWS = (("pending", QueueStatus.PENDING), ("in progress", QueueStatus.IN_PROGRESS),
              ("failed", QueueStatus.FAILED), ("dead", QueueStatus.DEAD), ("done", QueueStatus.DONE))


class DashboardScreen(PollingScreen):
    SCREEN_NAME = "dashboard"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "app.show('conflicts')", "Conflicts", id="goto_conflicts"),
        Binding("q", "app.show('queue')", "Queue", id="goto_queue"),
        Binding("l", "app.show('logs')", "Logs", id="goto_logs"),
        Binding("h", "app.show('health')", "Health", id="goto_health"),
        Binding("a", "app.show('actions')", "Actions", id="goto_actions"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.last_log_id: int | None = None
        self.throughput = data.Throughput()

    def compose(self) -> ComposeResult:
        yield from top_bar()
        with Horizontal(id="dash-top"):
            with Vertical(id="queue-panel", classes="panel"):
                yield Static(id="queue-depth")
                yield Sparkline([], id="throughput")
            with Vertical(id="side-panel", classes="panel"):
                yield Static(id="conflict-count")
                yield Static(id="health-summary")
        yield RichLog(id="log-tail", max_lines=LOG_LINES_KEPT, wrap=False, markup=False, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#queue-panel").border_title = "Queue"
        self.query_one("#side-panel").border_title = "Conflicts · Health"
        self.query_one("#log-tail").border_title = "Sync log (newest last)"
        super().on_mount()

    def fetch(self) -> tuple[EngineStatus, Any]:
        snapshot = data.load_dashboard(self.console_app.db, now=self.console_app.now(), after_log_id=self.last_log_id)
        return snapshot.status, snapshot

    def show(self, snapshot: data.DashboardData) -> None:
        counts = snapshot.depth.by_status
        self.throughput.add(counts.get(QueueStatus.DONE, 0))
        self.query_one("#queue-depth", Static).update(self._queue_text(snapshot))
        spark = self.query_one("#throughput", Sparkline)
        spark.data = list(self.throughput.history)
        spark.display = any(self.throughput.history)  # all zeros would draw as full bars
        conflicts = self._conflict_text(snapshot.open_conflicts)
        webhook_lines = [line for line in (self._refused_webhooks(snapshot.status), self._echoes(snapshot.status))
                         if line is not None]
        for line in webhook_lines:
            conflicts.append("\n").append_text(line)
        self.query_one("#conflict-count", Static).update(conflicts)
        width = max(self.query_one("#conflict-count").size.width, 1)
        extra = sum(-(-line.cell_len // width) for line in webhook_lines)  # the lines they wrap to
        rows = max(self.query_one("#side-panel").size.height - 3 - extra, 2)
        app = self.console_app
        views = health_views(snapshot.health, snapshot.status, now=app.now(),
                             interval_seconds=app.config.scheduler.health_interval_seconds)
        self.query_one("#health-summary", Static).update(
            health_summary(views, rows, engine_stopped=snapshot.status.mode == "stopped"))
        tail = self.query_one("#log-tail", RichLog)
        for row in snapshot.new_logs:
            tail.write(log_line(row))
        if snapshot.new_logs:
            self.last_log_id = snapshot.new_logs[-1].id

    def _queue_text(self, snapshot: data.DashboardData) -> Text:
        counts = snapshot.depth.by_status
        text = Text()
        for label, status in QUEUE_ROWS:
            n = counts.get(status, 0)
            style = "bold red" if status == QueueStatus.DEAD and n else ("yellow" if status == QueueStatus.FAILED
                                                                          and n else "")
            text.append(f"{label:<12}", style="dim" if not n else "")
            text.append(f"{n:>9,}\n", style=style)
        text.append("oldest pending ", style="dim")
        text.append(data.format_age(snapshot.depth.oldest_pending_age), style="bold")
        last = self.throughput.history[-1] if self.throughput.history else 0
        text.append(f"  done/refresh {last:,.0f}", style="dim")
        return text

    @staticmethod
    def _refused_webhooks(status: EngineStatus) -> Text | None:
        """Webhooks the running engine's receiver refused lately (bad signature, unknown site), from its lease:
        live at every heartbeat, before the next receiver.rejected health check. Nothing when no engine runs."""
        recent = status.info.get("webhooks_rejected_recent") if status.mode != "stopped" else None
        if not isinstance(recent, dict):
            return None
        return rejected_webhooks_line(recent, REJECTION_WINDOW_SECONDS // 60)

    @staticmethod
    def _echoes(status: EngineStatus) -> Text | None:
        """Webhooks the running engine settled as echoes of its own writes (logged at DEBUG only, so counted here):
        a healthy two-way sync shows it climbing. Nothing when no engine runs or it does not report the count."""
        count = queries.echo_count(status)
        if count is None:
            return None
        return Text(f"echoes of our own writes skipped: {count:,}", style="dim")

    @staticmethod
    def _conflict_text(count: int) -> Text:
        if not count:
            return Text("✓ no open conflicts", style="green")
        text = Text(f"! {count} open conflict{'s' if count != 1 else ''}", style="bold yellow")
        text.append("  (c to resolve)", style="dim")
        return text

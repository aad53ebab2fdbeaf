"""Health: every check's latest result with its age, and the triage walk (where it stops, and what to do).

An attached console's own run (`r`) is shown until the engine stores a newer result, then replaced by it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.engine import health
from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.models import HealthResult, utcnow
from erpsync_tui.tui import data
from erpsync_tui.tui.health_view import CheckView, as_check, health_views, newest_stored
from erpsync_tui.tui.health_view import current as current_results
from erpsync_tui.tui.render import health_tag
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.screens.base import PollingScreen, top_bar

COLUMNS = ("status", "age", "check", "target", "value", "code", "quick fix")
__all__ = ["HealthScreen", "as_check", "triage_text"]


def triage_text(results: list[health.CheckResult], stale: int = 0) -> Text:
    """The walk as a ladder: ✓ passed steps, ✗ the step where it stops (with its fixes), · steps not reached."""
    if not results:
        return Text("no health results yet — the engine runs checks periodically; r runs them now", style="dim")
    verdict = health.triage(results)
    out = Text("Triage  ", style="bold")
    stopped = False
    for index, step in enumerate(health.TRIAGE_STEPS, start=1):
        label = f"{index}. {health.STEP_QUESTIONS[step]}"
        if stopped:
            out.append(f"· {label}  ", style="dim")
        elif step == verdict.step:
            out.append(f"✗ {label}  ", style="bold red")
            stopped = True
        else:
            out.append(f"✓ {label}  ", style="green")
    out.append("\n")
    out.append_text(safe_text(verdict.summary, "bold" if not verdict.ok else "", single_line=False))
    if stale:
        out.append(f"  ({stale} result{'s' if stale != 1 else ''} too old to count — r checks again)", style="dim")
    for fix in [f for f in verdict.fixes if f not in verdict.summary][:4]:
        out.append("\n→ ", style="bold")
        out.append_text(safe_text(fix, single_line=False))
    return out


class HealthScreen(PollingScreen):
    SCREEN_NAME = "health"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "app.rerun_checks", "Run checks now", id="rerun_checks"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.local_results: list[health.CheckResult] | None = None  # an attached console's own run
        self.local_at = utcnow()  # when it ran: the next stored result newer than this replaces it
        self.results: dict[str, CheckView] = {}

    def compose(self) -> ComposeResult:
        yield from top_bar()
        yield DataTable(id="health-table", cursor_type="row")
        yield Static(id="triage")
        yield Static(id="health-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#health-table", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.border_title = "Checks — failing first"
        super().on_mount()
        table.focus()

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        return engine_status(db, now=self.console_app.now()), data.health_rows(db)

    def show(self, rows: list[HealthResult]) -> None:
        newest = newest_stored(rows)
        if self.local_results is not None and newest is not None and _aware(newest) > self.local_at:
            self.local_results = None  # the engine has checked since: its result is the present
        app = self.console_app
        views = health_views(rows, app.engine, now=app.now(), local=self.local_results,
                             interval_seconds=app.config.scheduler.health_interval_seconds)
        table = self.query_one("#health-table", DataTable)
        fresh = {view.key: view for view in views}
        current = [k.value for k in table.rows]
        with self.app.batch_update():
            if current == list(fresh):  # same checks in the same order: update changed cells only
                for key, result in fresh.items():
                    for column, cell in zip(COLUMNS, self._cells(result), strict=True):
                        if table.get_cell(key, column) != cell:
                            table.update_cell(key, column, cell)
            else:
                keep_cursor = table.cursor_row
                table.clear()
                for key, result in fresh.items():
                    table.add_row(*self._cells(result), key=key)
                if table.row_count:
                    table.move_cursor(row=min(max(keep_cursor, 0), table.row_count - 1), animate=False)
        self.results = fresh
        table.border_subtitle = ("local run (attached console; not stored) — replaced by the engine's next result"
                                 if self.local_results is not None else "")
        stale = sum(1 for view in views if view.stale)
        self.query_one("#triage", Static).update(triage_text(current_results(views), stale))
        self._show_detail()

    @staticmethod
    def _cells(view: CheckView) -> list[Text]:
        result = view.result
        tag = Text("? stale", style="dim") if view.stale else health_tag(result.status)
        age = {"live": "live", "local": "just now"}.get(view.source) or data.format_age(view.age) + " ago"
        return [tag, Text(age, style="dim" if view.stale else ""), Text(result.check), safe_text(result.target),
                safe_text(result.value, width=24), Text(result.error_code or ""), safe_text(result.quick_fix, width=80)]

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.query_one("#health-table", DataTable)
        detail = self.query_one("#health-detail", Static)
        if table.row_count == 0:
            detail.update("")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        view = self.results.get(key)
        if view is None:
            return
        result = view.result
        out = Text(f"{result.check} {result.target}: ", style="bold")
        if view.stale:
            out.append(f"[{result.status}, {data.format_age(view.age)} old — not current] ", style="dim")
        out.append_text(safe_text(result.detail, single_line=False, width=500))
        detail.update(out)

    def show_local(self, results: list[health.CheckResult], ran_at: datetime | None = None) -> None:
        self.local_results = results
        self.local_at = ran_at or utcnow()
        self.poll_now()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

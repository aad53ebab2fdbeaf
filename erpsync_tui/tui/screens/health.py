"""Health: every check's latest result and the triage walk (where it stops, and what to do)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.engine import health
from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.models import HealthResult
from erpsync_tui.tui import data
from erpsync_tui.tui.render import health_tag
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.screens.base import EngineHeader, PollingScreen

COLUMNS = ("status", "check", "target", "value", "code", "quick fix")


def as_check(row: HealthResult) -> health.CheckResult:
    return health.CheckResult(row.check, row.target, row.status, row.value, row.detail, row.error_code, row.quick_fix,
                              health.CHECK_STEPS.get(row.check, "sync_running"))


def triage_text(results: list[health.CheckResult]) -> Text:
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
        self.results: dict[str, health.CheckResult] = {}

    def compose(self) -> ComposeResult:
        yield EngineHeader(id="header")
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
        results = self.local_results if self.local_results is not None else [as_check(r) for r in rows]
        rank = {"fail": 0, "warn": 1, "ok": 2}
        results = sorted(results, key=lambda r: (rank.get(r.status, 3), health.TRIAGE_STEPS.index(r.step)
                                                 if r.step in health.TRIAGE_STEPS else 9, r.check, r.target))
        table = self.query_one("#health-table", DataTable)
        fresh = {f"{r.check}|{r.target}": r for r in results}
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
        if self.local_results is not None:
            table.border_subtitle = "local run (attached console; not stored)"
        self.query_one("#triage", Static).update(triage_text(results))
        self._show_detail()

    @staticmethod
    def _cells(result: health.CheckResult) -> list[Text]:
        return [health_tag(result.status), Text(result.check), safe_text(result.target), safe_text(result.value,
                width=24), Text(result.error_code or ""), safe_text(result.quick_fix, width=80)]

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        table = self.query_one("#health-table", DataTable)
        detail = self.query_one("#health-detail", Static)
        if table.row_count == 0:
            detail.update("")
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        result = self.results.get(key)
        if result is None:
            return
        out = Text(f"{result.check} {result.target}: ", style="bold")
        out.append_text(safe_text(result.detail, single_line=False, width=500))
        detail.update(out)

    def show_local(self, results: list[health.CheckResult]) -> None:
        self.local_results = results
        self.poll_now()

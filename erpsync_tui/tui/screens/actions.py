"""Actions: every operator action from the `operator_action` table — who, from where, when, what, result.

Read-only: it lists what the console and the CLI asked the engine to do and what the engine answered.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from sqlmodel import col, select
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import OperatorAction
from erpsync_tui.tui.modals import TextViewScreen
from erpsync_tui.tui.render import clock
from erpsync_tui.tui.safe import display_value, safe_text
from erpsync_tui.tui.screens.base import PollingScreen, top_bar

COLUMNS = ("id", "when", "who", "action", "target", "status", "result")
PAGE = 500
STATUS_STYLE = {"done": ("✓ done", "green"), "failed": ("✗ failed", "bold red"), "pending": ("… pending", "yellow")}


def action_rows(db: Database, limit: int = PAGE) -> list[OperatorAction]:
    with db.read() as session:
        return list(session.exec(select(OperatorAction).order_by(col(OperatorAction.id).desc()).limit(limit)).all())


class ActionsScreen(PollingScreen):
    SCREEN_NAME = "actions"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "full_text", "Details", id="action_details"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.actions: dict[str, OperatorAction] = {}

    def compose(self) -> ComposeResult:
        yield from top_bar()
        yield DataTable(id="actions-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="actions-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#actions-table", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.border_title = "Operator actions — newest first"
        super().on_mount()
        table.focus()

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        return engine_status(db, now=self.console_app.now()), action_rows(db)

    def show(self, rows: list[OperatorAction]) -> None:
        table = self.query_one("#actions-table", DataTable)
        fresh = {str(row.id): row for row in rows}
        reading = self._selected_key()
        with self.app.batch_update():
            for key in [k.value for k in list(table.rows) if k.value not in fresh]:
                table.remove_row(key)
            for key, row in fresh.items():
                cells = self._cells(row)
                if key not in table.rows:
                    table.add_row(*cells, key=key)
                elif self.actions.get(key) is None or self._cells(self.actions[key]) != cells:
                    for column, cell in zip(COLUMNS, cells, strict=True):
                        table.update_cell(key, column, cell)
            table.sort("id", key=lambda cell: int(cell.plain), reverse=True)
        self.actions = fresh
        if reading is not None and reading in table.rows:
            table.move_cursor(row=table.get_row_index(reading), animate=False)
        table.border_subtitle = f"{len(rows)} shown" + (f" (newest {PAGE})" if len(rows) >= PAGE else "")
        self._show_detail()

    @staticmethod
    def _cells(row: OperatorAction) -> list[Text]:
        word, style = STATUS_STYLE.get(row.status, (row.status, ""))
        return [Text(str(row.id)), Text(f"{row.created_at:%m-%d} {clock(row.created_at)}"),
                safe_text(f"{row.actor}@{row.host}", width=24), safe_text(row.action), safe_text(row.target or "",
                width=24), Text(word, style=style), safe_text(row.result or "", width=60)]

    def _selected_key(self) -> str | None:
        table = self.query_one("#actions-table", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def _selected(self) -> OperatorAction | None:
        return self.actions.get(self._selected_key() or "")

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_full_text()

    def _show_detail(self) -> None:
        row = self._selected()
        detail = self.query_one("#actions-detail", Static)
        if row is None:
            detail.update(Text("no operator actions yet" if not self.actions else "", style="dim"))
            return
        detail.update(_describe(row, width=300))

    def action_full_text(self) -> None:
        row = self._selected()
        if row is not None:
            self.app.push_screen(TextViewScreen(f"Operator action #{row.id}", _describe(row, width=None)))


def _describe(row: OperatorAction, *, width: int | None) -> Text:
    out = Text(f"#{row.id} {row.action}", style="bold")
    out.append_text(safe_text(f" by {row.actor} from {row.host} at {row.created_at:%Y-%m-%d %H:%M:%S} UTC"))
    if row.target:
        out.append_text(safe_text(f" on {row.target}"))
    out.append("\n")
    out.append_text(safe_text(f"params: {display_value(row.params or {})}", width=width))
    out.append("\n")
    out.append(f"{row.status}", style="bold")
    if row.processed_at is not None:
        out.append_text(safe_text(f" at {row.processed_at:%H:%M:%S} by {row.processed_by or '?'}"))
    out.append(": ")
    out.append_text(safe_text(row.result or "(no answer yet)", single_line=False, width=width))
    return out

"""The open conflicts as a table keyed by conflict id: rows are updated in place, never rebuilt."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from erpsync_tui.tui import data
from erpsync_tui.tui.safe import safe_text


class ConflictList(DataTable[Any]):
    DEFAULT_CSS = """
    ConflictList {
        height: 6;
        border: round $primary 50%;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.pair: tuple[str, str] = ("cloud", "local")

    def setup_columns(self, pair: tuple[str, str]) -> None:
        self.pair = pair
        self.add_columns("#", "doctype", "document", "fields", "opened")
        self.border_title = "Open conflicts"

    def sync(self, rows: list[data.ConflictRow], edited: set[int]) -> None:
        keys = {str(r.id) for r in rows}
        with self.app.batch_update():
            for key in [k.value for k in list(self.rows) if k.value not in keys]:
                self.remove_row(key)
            for row in rows:
                cells = self._cells(row, row.id in edited)
                if str(row.id) not in self.rows:
                    self.add_row(*cells, key=str(row.id))
                else:
                    self.update_cell(str(row.id), self.ordered_columns[3].key, cells[3])
        self.border_subtitle = f"{len(rows)} open" + (" (first 500)" if len(rows) >= 500 else "")

    def _cells(self, row: data.ConflictRow, edited: bool) -> list[Any]:
        a, b = self.pair
        names = row.names.get(a) or ""
        if row.names.get(b) and row.names.get(b) != names:
            names = f"{names} / {row.names.get(b)}"
        mark = " ✎" if edited else ""
        return [Text(str(row.id)), safe_text(row.doctype), safe_text(names, width=32),
                safe_text(", ".join(row.fields) + mark, width=26), Text(data.short_time(row.created_at))]

    def move_to(self, conflict_id: int | None) -> None:
        if conflict_id is None or str(conflict_id) not in self.rows:
            return
        index = self.get_row_index(str(conflict_id))
        if self.cursor_row != index:
            self.move_cursor(row=index, animate=False)

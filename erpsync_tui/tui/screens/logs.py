"""Logs: the whole sync log paged from the database (newest page first, older pages on demand).

Each line says which way a write went (`cloud → local`); a conflict is one line however often the engine met
it again; enter jumps to the conflict or queue item a line names, else shows the line's full text.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.models import SyncLog
from erpsync_tui.tui import data
from erpsync_tui.tui.modals import PromptScreen, TextViewScreen
from erpsync_tui.tui.render import clock, conflict_number, level_text, where_text
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.screens.base import PollingScreen, top_bar

MAX_ROWS = 3000  # rows kept in the table; older ones are a page-up away in the database
LEVEL_KEYS = {"1": "INFO", "2": "WARNING", "3": "ERROR"}
FIXED_COLUMNS = (("time", 8), ("lvl", 3), ("where", 14), ("doctype", 12), ("name", 16))
# Below 100 columns the doctype goes (it stays in the line's detail) and the others narrow: the message keeps room.
NARROW_COLUMNS = (("time", 8), ("lvl", 3), ("where", 11), ("name", 12))
NARROW_BELOW = 100


class LogTable(DataTable[Any]):
    """A DataTable that asks for the older page when the cursor is pushed past its first row."""

    class NeedOlder(Message):
        pass

    def action_page_up(self) -> None:
        if self.cursor_row <= 0:
            self.post_message(self.NeedOlder())
        super().action_page_up()

    def action_cursor_up(self) -> None:
        if self.cursor_row <= 0:
            self.post_message(self.NeedOlder())
        super().action_cursor_up()


class LogsScreen(PollingScreen):
    SCREEN_NAME = "logs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter", id="log_filter"),
        Binding("1", "toggle_level('INFO')", "INFO", id="toggle_info"),
        Binding("2", "toggle_level('WARNING')", "WARN", id="toggle_warning"),
        Binding("3", "toggle_level('ERROR')", "ERROR", id="toggle_error"),
        Binding("f", "follow", "Follow", id="follow"),
        Binding("o", "older", "Older", id="older", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.query_spec = data.LogQuery()
        self.following = True
        self.rows: list[SyncLog] = []
        self.reset = True  # the next load replaces the table (new filter) instead of appending
        self.exhausted = False
        self.message_width = 40
        self.columns: tuple[tuple[str, int], ...] = FIXED_COLUMNS
        self.conflict_rows: dict[int, str] = {}  # conflict number → the key of the one line that shows it
        self.repeats: dict[str, int] = {}  # that line's key → how many times the engine logged it
    def compose(self) -> ComposeResult:
        yield from top_bar()
        yield Static(id="log-status")
        yield LogTable(id="log-table", cursor_type="row")
        yield Static(id="log-detail")
        yield Footer()

    def on_mount(self) -> None:
        self._add_columns(self.app.size.width)
        super().on_mount()
        self.query_one(LogTable).focus()

    def _add_columns(self, width: int) -> None:
        table = self.query_one(LogTable)
        self.columns = NARROW_COLUMNS if width < NARROW_BELOW else FIXED_COLUMNS
        for name, column_width in self.columns:
            table.add_column(name, key=name, width=column_width)
        self.message_width = self._message_width(width)
        table.add_column("message", key="message", width=self.message_width)

    def _message_width(self, width: int) -> int:
        """What is left for the message (cells are padded by one column each side)."""
        return max(width - sum(w for _, w in self.columns) - 2 * (len(self.columns) + 1) - 2, 12)

    def on_resize(self) -> None:
        """The columns follow the terminal's width (cells hold the whole message; the column cuts it)."""
        super().on_resize()
        table = self.query_one(LogTable)
        if "message" not in table.columns:
            return
        wanted = NARROW_COLUMNS if self.size.width < NARROW_BELOW else FIXED_COLUMNS
        if wanted != self.columns:  # another set of columns: rebuild the table from the rows held
            rows = self.rows
            with self.app.batch_update():
                table.clear(columns=True)
                self._add_columns(self.size.width)
                self.rows, self.conflict_rows, self.repeats = [], {}, {}
                self._append(rows)
            return
        width = self._message_width(self.size.width)
        if width != self.message_width:
            self.message_width = width
            table.columns["message"].width = width  # type: ignore[index]
            table._require_update_dimensions = True
            table.refresh()

    # ------------------------------------------------------------------------------------------ loading

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        status = engine_status(db, now=self.console_app.now())
        reset = self.reset
        after = None if reset or not self.rows else self.rows[-1].id
        if not reset and not self.following:
            return status, (False, [])  # paused view: leave the table alone
        return status, (reset, data.log_page(db, self.query_spec, after_id=after))

    def show(self, payload: tuple[bool, list[SyncLog]]) -> None:
        reset, rows = payload
        table = self.query_one(LogTable)
        if reset:
            self.reset = False
            self.exhausted = False
            self.rows = []
            self.conflict_rows, self.repeats = {}, {}
            table.clear()
        self._append(rows)
        self._update_status()

    def _append(self, rows: list[SyncLog]) -> None:
        table = self.query_one(LogTable)
        with self.app.batch_update():
            for row in rows:
                if self._repeat_of_a_conflict(row, table):
                    continue
                table.add_row(*self._cells(row), key=str(row.id))
                self.rows.append(row)
            overflow = len(self.rows) - MAX_ROWS
            if overflow > 0:
                for row in self.rows[:overflow]:
                    table.remove_row(str(row.id))
                    self._forget(row)
                del self.rows[:overflow]
                self.exhausted = False
        if rows and self.following:
            table.move_cursor(row=table.row_count - 1, animate=False)

    def _repeat_of_a_conflict(self, row: SyncLog, table: LogTable) -> bool:
        """The engine meets an open conflict again at every sync of its document: one line per conflict, with
        a count, instead of one per meeting."""
        number = conflict_number(row)
        if number is None:
            return False
        key = self.conflict_rows.get(number)
        if key is None or key not in table.rows:
            self.conflict_rows[number] = str(row.id)
            return False
        self.repeats[key] = self.repeats.get(key, 1) + 1
        first = next((r for r in self.rows if str(r.id) == key), None)
        if first is not None:
            table.update_cell(key, "message", self._message(first))
        return True

    def _forget(self, row: SyncLog) -> None:
        self.repeats.pop(str(row.id), None)
        number = conflict_number(row)
        if number is not None and self.conflict_rows.get(number) == str(row.id):
            del self.conflict_rows[number]

    def _message(self, row: SyncLog) -> Text:
        message = f"{row.error_code} {row.message}" if row.error_code else row.message
        text = safe_text(message)
        seen = self.repeats.get(str(row.id))
        if seen:
            text.append(f"  (logged {seen}×)", style="dim")
        return text

    def _cells(self, row: SyncLog) -> list[Text]:
        cells = {"time": Text(clock(row.ts), style="dim"), "lvl": level_text(row.level), "where": where_text(row),
                 "doctype": safe_text(row.doctype or ""), "name": safe_text(row.name or "")}
        return [cells[name] for name, _ in self.columns] + [self._message(row)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = next((r for r in reversed(self.rows) if str(r.id) == event.row_key.value), None)
        detail = self.query_one("#log-detail", Static)
        if row is None:
            detail.update("")
            return
        out = Text(f"#{row.id} {row.ts:%Y-%m-%d %H:%M:%S} {row.level} ", style="bold")
        out.append_text(where_text(row))
        out.append(" ")
        out.append_text(safe_text(" ".join(p for p in (row.doctype, row.name) if p), "bold"))
        if row.error_code:
            out.append(f" {row.error_code}", style="bold")
        out.append(" ")
        out.append_text(safe_text(row.message, width=500))
        if row.record_id or row.queue_item_id or conflict_number(row) is not None:
            out.append("  (enter: jump to it)", style="dim")
        else:
            out.append("  (enter: full text)", style="dim")
        detail.update(out)

    def _update_status(self) -> None:
        text = Text("levels ", style="dim")
        for key, level in LEVEL_KEYS.items():
            on = level in self.query_spec.levels
            text.append(f"{key}:{'☑' if on else '☐'}{level} ", style="bold" if on else "dim")
        text.append("  follow ", style="dim")
        text.append("ON" if self.following else "off", style="bold" if self.following else "")
        if self.query_spec.text:
            text.append("   filter ", style="dim")
            text.append_text(safe_text(self.query_spec.text, "bold", width=30))
        text.append(f"   {len(self.rows)} rows shown", style="dim")
        if self.exhausted:
            text.append(" (start of log)", style="dim")
        self.query_one("#log-status", Static).update(text)

    def on_log_table_need_older(self, _message: LogTable.NeedOlder) -> None:
        self.action_older()

    def action_older(self) -> None:
        if self.exhausted or not self.rows:
            return
        self._load_older(self.rows[0].id)

    @work(thread=True, exclusive=True, exit_on_error=False, group="older")
    def _load_older(self, before_id: int | None) -> None:
        rows = data.log_page(self.console_app.db, self.query_spec, before_id=before_id)
        self.app.call_from_thread(self._prepend, rows)

    def _prepend(self, older: list[SyncLog]) -> None:
        """DataTable only appends, so an older page rebuilds the table: rare, and on an explicit key."""
        if not older:
            self.exhausted = True
            self._update_status()
            return
        self.following = False  # reading history: stop jumping to the bottom
        table = self.query_one(LogTable)
        keep = (older + self.rows)[:MAX_ROWS]
        with self.app.batch_update():
            table.clear()
            self.rows = []
            self.conflict_rows, self.repeats = {}, {}
            self._append(keep)
        table.move_cursor(row=max(len(older) - 1, 0), animate=False)
        self._update_status()

    # ------------------------------------------------------------------------------------------ actions

    def _reload(self) -> None:
        self.reset = True
        self.poll_now()

    def action_toggle_level(self, level: str) -> None:
        levels = set(self.query_spec.levels) ^ {level}
        if not levels:
            self.notify("at least one level stays on")
            return
        self.query_spec = data.LogQuery(frozenset(levels), self.query_spec.text)
        self._reload()

    def action_follow(self) -> None:
        self.following = not self.following
        if self.following:
            self._reload()  # back to the newest page
        self._update_status()

    def action_filter(self) -> None:
        def apply(text: str | None) -> None:
            if text is None:
                return
            self.query_spec = data.LogQuery(self.query_spec.levels, text.strip())
            self._reload()

        self.app.push_screen(PromptScreen("Filter log (text in message, doctype, name or code)",
                                          value=self.query_spec.text, hint="empty = no filter"), apply)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        row = next((r for r in self.rows if str(r.id) == event.row_key.value), None)
        if row is None:
            return
        if row.record_id or row.queue_item_id or conflict_number(row) is not None:
            self.console_app.jump_to(row)
            return
        text = Text(f"#{row.id} {row.ts:%Y-%m-%d %H:%M:%S} {row.level} ", style="bold")
        text.append_text(where_text(row))
        text.append_text(safe_text(f" {row.doctype or ''} {row.name or ''}\n\n"))
        text.append_text(safe_text(f"{row.error_code or ''} {row.message}".strip(), single_line=False))
        self.app.push_screen(TextViewScreen("Log line", text))

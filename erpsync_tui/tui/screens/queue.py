"""Queue: failed and dead items with their error; retry, retry all shown, discard, requeue stuck, filter."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.errors import error_title, quick_fix
from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.models import QueueItem
from erpsync_tui.tui import data
from erpsync_tui.tui.modals import ConfirmScreen, PromptScreen
from erpsync_tui.tui.render import status_tag
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.screens.base import EngineHeader, PollingScreen

COLUMNS = ("id", "status", "site", "doctype", "name", "code", "tries", "last error")


class QueueScreen(PollingScreen):
    SCREEN_NAME = "queue"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", id="retry"),
        Binding("R", "retry_all", "Retry all shown", id="retry_all"),
        Binding("d", "discard", "Discard", id="discard"),
        Binding("s", "requeue_stuck", "Requeue stuck", id="requeue_stuck"),
        Binding("slash", "filter", "Filter", id="queue_filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = data.QueueFilter()
        self.items: dict[str, QueueItem] = {}
        self.pending_focus: int | None = None

    def compose(self) -> ComposeResult:
        yield EngineHeader(id="header")
        yield Static(id="queue-filter-line")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="queue-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#queue-table", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        table.border_title = "Failed and dead items"
        super().on_mount()
        table.focus()

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        return engine_status(db, now=self.console_app.now()), data.queue_page(db, self.filter)

    def show(self, items: list[QueueItem]) -> None:
        table = self.query_one("#queue-table", DataTable)
        fresh = {str(item.id): item for item in items}
        with self.app.batch_update():
            for key in [k.value for k in list(table.rows) if k.value not in fresh]:
                table.remove_row(key)
            for key, item in fresh.items():
                cells = self._cells(item)
                old = self.items.get(key)
                if key not in table.rows:
                    table.add_row(*cells, key=key)
                elif old is None or self._cells(old) != cells:
                    for column, cell in zip(COLUMNS, cells, strict=True):
                        table.update_cell(key, column, cell)
        self.items = fresh
        suffix = f" (newest {data.QUEUE_PAGE})" if len(items) >= data.QUEUE_PAGE else ""
        line = Text("filter ", style="dim")
        line.append_text(safe_text(self.filter.describe(), "bold"))
        line.append(f"   {len(items)} item{'s' if len(items) != 1 else ''}{suffix}   / to filter", style="dim")
        self.query_one("#queue-filter-line", Static).update(line)
        if self.pending_focus is not None and str(self.pending_focus) in table.rows:
            table.move_cursor(row=table.get_row_index(str(self.pending_focus)), animate=False)
            self.pending_focus = None
        self._show_detail()

    @staticmethod
    def _cells(item: QueueItem) -> list[Text]:
        return [Text(str(item.id)), status_tag(item.status), safe_text(item.site or ""), safe_text(item.doctype or ""),
                safe_text(item.name or "", width=30), Text(item.error_code or ""),
                Text(f"{item.attempts}/{item.max_attempts}"), safe_text(item.last_error or "", width=60)]

    def focus_item(self, item_id: int) -> None:
        """Jump here from a log line: show every status so the item is found whatever its state."""
        self.filter = data.QueueFilter(statuses=("pending", "in_progress", "failed", "dead", "done"))
        self.pending_focus = item_id
        if self.is_mounted:
            self.poll_now()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _selected(self) -> QueueItem | None:
        table = self.query_one("#queue-table", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.items.get(key or "")

    def _show_detail(self) -> None:
        item = self._selected()
        detail = self.query_one("#queue-detail", Static)
        if item is None:
            detail.update(Text("no failed or dead items" if not self.items else "", style="dim"))
            return
        out = Text(f"#{item.id} {item.kind} ", style="bold")
        out.append_text(safe_text(" ".join(p for p in (item.site, item.doctype, item.name) if p)))
        if item.error_code:
            out.append(f"\n{item.error_code} {error_title(item.error_code)}: ", style="bold")
            out.append(quick_fix(item.error_code))
        out.append("\n")
        out.append_text(safe_text(item.last_error or "", single_line=False, width=600))
        detail.update(out)

    # ------------------------------------------------------------------------------------------ actions

    def action_retry(self) -> None:
        item = self._selected()
        if item is None:
            self.notify("no item selected")
            return
        self.console_app.submit("retry", {"ids": [item.id]}, target=f"queue item {item.id}")

    def action_retry_all(self) -> None:
        if not self.items:
            self.notify("nothing to retry")
            return
        if self.console_app.refuse_if_readonly("retry_all"):
            return
        params = self.filter.action_params()
        question = Text(f"Retry every item matching «{self.filter.describe()}» ({len(self.items)} shown)?")
        self.app.push_screen(ConfirmScreen(question, title="Retry all"),
                             lambda ok: ok and self.console_app.submit("retry_all", params, target="queue"))

    def action_discard(self) -> None:
        item = self._selected()
        if item is None:
            self.notify("no item selected")
            return
        if self.console_app.refuse_if_readonly("discard"):
            return
        question = Text(f"Discard queue item #{item.id} (")
        question.append_text(safe_text(f"{item.doctype or ''} {item.name or ''}".strip(), width=60))
        question.append(")? It will not be synced.")
        self.app.push_screen(ConfirmScreen(question, title="Discard"),
                             lambda ok: ok and self.console_app.submit("discard", {"ids": [item.id]},
                                                                      target=f"queue item {item.id}"))

    def action_requeue_stuck(self) -> None:
        self.console_app.submit("requeue_stuck", {}, target="queue")

    def action_filter(self) -> None:
        def apply(text: str | None) -> None:
            if text is None:
                return
            self.filter = data.QueueFilter.parse(text)
            self.poll_now()

        current = " ".join(f"{k}:{v}" for k, v in (("doctype", self.filter.doctype), ("site", self.filter.site),
                                                    ("code", self.filter.error_code)) if v)
        self.app.push_screen(PromptScreen("Filter queue", value=current, placeholder='code:ERP002 site:local',
                                          hint='keys: code: site: doctype: status:failed,dead — empty = all'), apply)

"""Queue: items by state (tabs: problems, pending, retrying, dead, discarded, done) with their error; retry,
retry all shown, discard, requeue stuck, filter. The cursor follows the item, not the row position."""

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
from erpsync_tui.tui.modals import ConfirmScreen, PromptScreen, TextViewScreen
from erpsync_tui.tui.render import status_tag
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.screens.base import PollingScreen, top_bar

COLUMNS = ("id", "status", "site", "doctype", "name", "code", "tries", "next try", "last error")
# The tabs: a key, a label, the states shown.
TABS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("0", "problems", data.PROBLEM_STATUSES), ("1", "pending", ("pending", "in_progress")),
    ("2", "retrying", ("failed",)), ("3", "dead", ("dead",)), ("4", "discarded", (data.DISCARDED,)),
    ("5", "done", ("done",)),
)


class QueueScreen(PollingScreen):
    SCREEN_NAME = "queue"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "retry", "Retry", id="retry"),
        Binding("R", "retry_all", "Retry all shown", id="retry_all"),
        Binding("d", "discard", "Discard", id="discard"),
        Binding("s", "requeue_stuck", "Requeue stuck", id="requeue_stuck"),
        Binding("slash", "filter", "Filter", id="queue_filter"),
        *(Binding(key, f"tab('{key}')", label.capitalize(), id=f"queue_tab_{label}", show=False)
          for key, label, _ in TABS),
        Binding("enter", "full_text", "Full error", id="queue_full_text", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = data.QueueFilter()
        self.items: dict[str, QueueItem] = {}
        self.pending_focus: int | None = None
        self.counts: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield from top_bar()
        yield Static(id="queue-tabs")
        yield DataTable(id="queue-table", cursor_type="row", zebra_stripes=True)
        yield Static(id="queue-detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#queue-table", DataTable)
        for name in COLUMNS:
            table.add_column(name, key=name)
        super().on_mount()
        table.focus()

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        return engine_status(db, now=self.console_app.now()), (data.queue_page(db, self.filter),
                                                                data.queue_counts(db))

    def show(self, payload: tuple[list[QueueItem], dict[str, int]]) -> None:
        items, self.counts = payload
        table = self.query_one("#queue-table", DataTable)
        fresh = {str(item.id): item for item in items}
        reading = self._selected_key()  # the item the operator reads stays under the cursor, wherever it moves
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
            table.sort("id", key=lambda cell: int(cell.plain), reverse=True)  # newest first, as loaded
        self.items = fresh
        if self.pending_focus is None and reading is not None and reading in table.rows:
            index = table.get_row_index(reading)
            if table.cursor_row != index:
                table.move_cursor(row=index, animate=False)
        self._show_tabs()
        table.border_title = f"Queue — {self.filter.describe()}"
        suffix = f" (newest {data.QUEUE_PAGE})" if len(items) >= data.QUEUE_PAGE else ""
        table.border_subtitle = f"{len(items)} item{'s' if len(items) != 1 else ''}{suffix} · / filter · 0–5 tabs"
        if self.pending_focus is not None and str(self.pending_focus) in table.rows:
            table.move_cursor(row=table.get_row_index(str(self.pending_focus)), animate=False)
            self.pending_focus = None
        self._show_detail()

    def _cells(self, item: QueueItem) -> list[Text]:
        return [Text(str(item.id)), status_tag(item.status), safe_text(item.site or ""), safe_text(item.doctype or ""),
                safe_text(item.name or "", width=30), Text(item.error_code or ""),
                Text(f"{item.attempts}/{item.max_attempts}"), self._next_try(item),
                safe_text(item.last_error or "", width=60)]

    def _next_try(self, item: QueueItem) -> Text:
        """When a waiting item is tried again: "in 25s" (or "due" once its time has come)."""
        if item.status not in ("failed", "pending") or item.next_attempt_at is None:
            return Text("")
        wait = item.next_attempt_at - self.console_app.now()
        if wait.total_seconds() <= 0:
            return Text("due", style="dim")
        return Text(f"in {data.format_age(wait)}")

    def _show_tabs(self) -> None:
        line = Text()
        for key, label, states in TABS:
            count = sum(self.counts.get(state, 0) for state in states)
            current = tuple(self.filter.statuses) == states
            chip = f" {key} {label} {count:,} "
            line.append(f"[{chip.strip()}]" if current else chip, style="bold reverse" if current else "")
            line.append(" ")
        self.query_one("#queue-tabs", Static).update(line)

    def action_tab(self, key: str) -> None:
        states = next(states for k, _, states in TABS if k == key)
        self.filter = self.filter.with_statuses(states)
        self.poll_now()

    def _selected_key(self) -> str | None:
        table = self.query_one("#queue-table", DataTable)
        if table.row_count == 0 or table.cursor_row < 0:
            return None
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_full_text()  # enter on a row: the table takes the key, the screen answers it

    def action_full_text(self) -> None:
        item = self._selected()
        if item is None:
            return
        text = Text(f"#{item.id} {item.status} ", style="bold")
        text.append_text(safe_text(" ".join(p for p in (item.site, item.doctype, item.name) if p)))
        text.append("\n\n")
        text.append_text(safe_text(item.last_error or "(no error recorded)", single_line=False))
        self.app.push_screen(TextViewScreen(f"Queue item #{item.id}", text))

    def focus_item(self, item_id: int) -> None:
        """Jump here from a log line: show every status so the item is found whatever its state."""
        self.filter = data.QueueFilter(statuses=data.QUEUE_STATES)
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
        if self.filter.name:
            # The engine's retry_all knows no name filter: send exactly the items shown, never more.
            action, params = "retry", {"ids": [int(item.id or 0) for item in self.items.values()]}
        else:
            action, params = "retry_all", self.filter.action_params()
        question = Text(f"Retry every item matching «{self.filter.describe()}» ({len(self.items)} shown)?")
        self.app.push_screen(ConfirmScreen(question, title="Retry all"),
                             lambda ok: ok and self.console_app.submit(action, params, target="queue"))

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
            try:
                self.filter = data.QueueFilter.parse(text, sites=self.console_app.pair)
            except data.FilterError as exc:
                self.notify(f"filter refused: {exc}", severity="warning", markup=False, timeout=8)
                return
            self.poll_now()

        self.app.push_screen(PromptScreen("Filter queue", value=self.filter.describe(),
                                          placeholder="status:dead code:ERP002 site:local name:CUST-0001",
                                          hint="keys: status: (pending in_progress failed=retrying dead discarded "
                                               "done all) code: site: doctype: name: — a bare word is a name; "
                                               "empty = failed and dead"), apply)

"""Conflicts: the open list, a side-by-side diff (field | cloud | local | base) with per-field and per-row
choices, and the detail of the line under the cursor."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.engine import document_merge as merging
from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.models import Conflict
from erpsync_tui.tui import data
from erpsync_tui.tui.modals import ConfirmScreen, PromptScreen, TextEditScreen
from erpsync_tui.tui.safe import display_value, safe_text
from erpsync_tui.tui.screens.base import PollingScreen, top_bar
from erpsync_tui.tui.widgets.conflict_list import ConflictList
from erpsync_tui.tui.widgets.detail_pane import DetailPane
from erpsync_tui.tui.widgets.diff_view import DiffView
from erpsync_tui.tui.widgets.resolution import ConflictModel, Resolution


class ConflictsScreen(PollingScreen):
    SCREEN_NAME = "conflicts"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "choose('a')", "←cloud", id="take_cloud_field", tooltip="this field / row from cloud"),
        Binding("l", "choose('b')", "←local", id="take_local_field", tooltip="this field / row from local"),
        Binding("b", "choose('both')", "Both rows", id="take_both_rows", show=False,
                tooltip="rows added on each site: keep both"),
        Binding("C", "take('a')", "All cloud", id="take_cloud_all"),
        Binding("L", "take('b')", "All local", id="take_local_all"),
        Binding("e", "edit", "Edit", id="edit_value"),
        Binding("u", "undo", "Clear choice", id="clear_choice", show=False),
        Binding("a", "apply", "Apply", id="apply_resolution"),
        Binding("n", "step(1)", "Next", id="next_conflict"),
        Binding("p", "step(-1)", "Prev", id="previous_conflict", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[data.ConflictRow] = []
        self.cache: dict[int, Conflict] = {}
        self.models: dict[int, ConflictModel] = {}
        self.resolutions: dict[int, Resolution] = {}
        self.selected_id: int | None = None
        self.shown_id: int | None = None
        self.pending_select: int | None = None

    # ------------------------------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield from top_bar()
        yield ConflictList(id="conflict-list")
        yield Static(id="conflict-title")
        yield DiffView(id="diff")
        yield DetailPane(id="detail-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ConflictList).setup_columns(self.pair)
        diff = self.query_one(DiffView)
        diff.setup_columns(self.pair)
        diff.border_title = "Diff — differing fields and rows first"
        super().on_mount()
        diff.focus()

    @property
    def pair(self) -> tuple[str, str]:
        return self.console_app.pair

    @property
    def diffs(self) -> dict[str, merging.FieldDiff]:
        model = self.models.get(self.shown_id or -1)
        return model.fields if model is not None and self.shown_id is not None else {}

    @property
    def model(self) -> ConflictModel | None:
        return self.models.get(self.shown_id or -1) if self.shown_id is not None else None

    # ------------------------------------------------------------------------------------------ data

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        status = engine_status(db, now=self.console_app.now())
        rows = data.conflict_rows(db)
        wanted = self.pending_select or self.selected_id or (rows[0].id if rows else None)
        ids = {r.id for r in rows}
        if wanted not in ids:
            wanted = rows[0].id if rows else None
        full = model = None
        if wanted is not None and wanted not in self.cache:
            full = data.conflict(db, wanted)
            if full is not None:  # the diff and row alignment are built here, off the UI thread
                model = ConflictModel.build(self.pair, dict(full.versions or {}), full.base)
        return status, (rows, wanted, full, model)

    def show(self, payload: tuple[list[data.ConflictRow], int | None, Conflict | None, ConflictModel | None]) -> None:
        rows, wanted, full, model = payload
        if full is not None and full.id is not None and model is not None:
            self.cache[full.id] = full
            self.models[full.id] = model
        self.rows = rows
        ids = {r.id for r in rows}
        for gone in [cid for cid in self.cache if cid not in ids]:
            self.cache.pop(gone, None)
            self.models.pop(gone, None)
        self._sync_list()
        if self.pending_select in ids:
            self.pending_select = None
        self.selected_id = wanted
        self.query_one(ConflictList).move_to(wanted)
        if wanted != self.shown_id or (wanted is not None and wanted in self.cache and not self.diffs):
            self._show_conflict(wanted)

    def select_conflict(self, conflict_id: int) -> None:
        """Jump here from elsewhere (a log line); takes effect at the next load."""
        self.pending_select = conflict_id
        self.selected_id = conflict_id
        if self.is_mounted:
            self.poll_now()

    def _sync_list(self) -> None:
        edited = {cid for cid, r in self.resolutions.items() if not r.empty}
        self.query_one(ConflictList).sync(self.rows, edited)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, ConflictList) and event.row_key.value is not None:
            chosen = int(event.row_key.value)
            if chosen != self.selected_id:
                self.selected_id = chosen
                if chosen in self.cache:
                    self._show_conflict(chosen)
                else:
                    self.poll_now()
        elif isinstance(event.data_table, DiffView):
            self.query_one(DetailPane).show(self.model, event.data_table.current_line())

    # ------------------------------------------------------------------------------------------ diff

    def _show_conflict(self, conflict_id: int | None) -> None:
        view = self.query_one(DiffView)
        title = self.query_one("#conflict-title", Static)
        conflict = self.cache.get(conflict_id) if conflict_id is not None else None
        self.shown_id = conflict_id if conflict is not None else None
        model = self.models.get(conflict_id) if conflict_id is not None else None
        resolution = self.resolutions.get(conflict_id or -1) or Resolution()
        view.show_conflict(self.shown_id, model if conflict is not None else None, resolution, self.size.width)
        if conflict is None or model is None:
            title.update(Text("✓ no open conflicts" if not self.rows else "loading…", style="bold"))
            self.query_one(DetailPane).show(None, None)
            return
        self._update_title(conflict)
        self.query_one(DetailPane).show(model, view.current_line())

    def _update_title(self, conflict: Conflict) -> None:
        a, b = self.pair
        model = self.models.get(conflict.id or -1)
        title = Text(f"#{conflict.id} ", style="bold")
        title.append_text(safe_text(conflict.doctype, "bold"))
        title.append(" ")
        name_a, name_b = conflict.names.get(a, "?"), conflict.names.get(b, "?")
        title.append_text(safe_text(name_a if name_a == name_b else f"{a}: {name_a}  {b}: {name_b}", width=40))
        resolution = self.resolutions.get(conflict.id or -1)
        if resolution and resolution.take:
            title.append(f"  → take all from {resolution.take}", style="bold cyan")
        elif model is not None:
            everything = model.open_items(None)
            left = model.open_items(resolution)
            title.append(f"  {len(everything)} to decide", style="bold red" if left else "green")
            title.append(f", {len(left)} left" if left else ", all chosen — a to apply")
        self.query_one("#conflict-title", Static).update(title)

    def on_diff_view_resolution_changed(self, event: DiffView.ResolutionChanged) -> None:
        if event.conflict_id is None:
            return
        self.resolutions[event.conflict_id] = event.resolution
        conflict = self.cache.get(event.conflict_id)
        if conflict is not None:
            self._update_title(conflict)
        self._sync_list()
        view = self.query_one(DiffView)
        self.query_one(DetailPane).show(self.model, view.current_line())

    # ------------------------------------------------------------------------------------------ actions

    def _side(self, side: str) -> str:
        return self.pair[0] if side == "a" else self.pair[1] if side == "b" else side

    def action_choose(self, side: str) -> None:
        if self.shown_id is None:
            self.notify("no conflict selected")
            return
        problem = self.query_one(DiffView).choose(self._side(side))
        if problem:
            self.notify(problem, severity="warning", markup=False)

    def action_take(self, side: str) -> None:
        if self.shown_id is None:
            self.notify("no conflict selected")
            return
        self.query_one(DiffView).take_all(self._side(side))

    def action_undo(self) -> None:
        if self.shown_id is not None:
            self.query_one(DiffView).take_all(None)

    def action_edit(self) -> None:
        view, model = self.query_one(DiffView), self.model
        line = view.current_line()
        if line is None or model is None or self.shown_id is None:
            self.notify("no field under the cursor")
            return
        if line.kind != "field" or line.field in model.hunks or model.fields[line.field].is_child_table:
            self.notify("child tables are chosen row by row here: c / l on a row, b for rows added on both sites",
                        severity="warning")
            return
        diff = model.fields[line.field]
        current = view.resolution.choices.get(line.field)
        value = current[1] if isinstance(current, tuple) else diff.local_value if current == self.pair[1] \
            else diff.cloud_value
        original = diff.cloud_value if diff.cloud_value is not None else diff.local_value

        def done(text: str | None) -> None:
            if text is not None:
                view.set_value(line.field, parse_edited(text, original))

        text = display_value(value)
        if "\n" in text or diff.is_long_text:
            self.app.push_screen(TextEditScreen(f"Edit {line.field}", text), done)
        else:
            self.app.push_screen(PromptScreen(f"Edit {line.field}", value=text,
                                              hint="enter = keep this value for both sites, esc = cancel"), done)

    def action_step(self, delta: int) -> None:
        if not self.rows:
            return
        ids = [r.id for r in self.rows]
        index = ids.index(self.selected_id) if self.selected_id in ids else 0
        self.query_one(ConflictList).move_to(ids[(index + delta) % len(ids)])

    def action_apply(self) -> None:
        conflict = self.cache.get(self.shown_id or -1)
        model = self.model
        resolution = self.resolutions.get(self.shown_id or -1)
        if conflict is None or model is None or resolution is None or resolution.empty:
            self.notify("choose first: c / l per field or row, C / L for a whole side, e to edit",
                        severity="warning")
            return
        params = self._params(conflict, model, resolution)
        if params is None or self.console_app.refuse_if_readonly("resolve"):
            return
        question = Text(f"Resolve conflict #{conflict.id} (")
        question.append_text(safe_text(conflict.doctype))
        question.append(") on BOTH sites with:\n")
        if resolution.take:
            question.append(f"  every field from {resolution.take}\n", style="bold")
        for name, choice in resolution.choices.items():
            question.append_text(safe_text(f"  {name}: ", "bold"))
            question.append_text(safe_text(f"✎ {display_value(choice[1])}" if isinstance(choice, tuple)
                                           else f"from {choice}", width=60))
            question.append("\n")
        for name, picks in resolution.rows.items():
            if name in resolution.choices or not picks:
                continue
            counts: dict[str, int] = {}
            for pick in picks.values():
                key = "field by field" if isinstance(pick, dict) else f"from {pick}"
                counts[key] = counts.get(key, 0) + 1
            summary = ", ".join(f"{n} {k}" for k, n in counts.items())
            question.append_text(safe_text(f"  {name}: rows chosen one by one ({summary}); other rows merged",
                                           width=90))
            question.append("\n")

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.console_app.submit("resolve", params, target=f"conflict #{conflict.id}")
                self.resolutions.pop(conflict.id or -1, None)
                self.action_step(1)
                self.poll_now()

        self.app.push_screen(ConfirmScreen(question, title="Apply resolution"), confirmed)

    def _params(self, conflict: Conflict, model: ConflictModel, resolution: Resolution) -> dict[str, Any] | None:
        if resolution.take:
            return {"conflict_id": conflict.id, "take": resolution.take, "choices": {}}
        try:
            choices = model.choices_for_engine(resolution)
        except ValueError as exc:
            self.notify(f"cannot apply yet: {exc}", severity="warning", markup=False)
            return None
        return {"conflict_id": conflict.id, "take": None,
                "choices": {k: (list(v) if isinstance(v, tuple) else v) for k, v in choices.items()}}


def parse_edited(text: str, original: Any) -> Any:
    """An edited value keeps the field's type: numbers and JSON stay numbers and JSON, text stays text."""
    if isinstance(original, str) or original is None:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


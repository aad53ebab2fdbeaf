"""Conflicts: the open list and a side-by-side diff (field | cloud | local | base) with per-field choices."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Static

from erpsync_tui.engine import documents as docs
from erpsync_tui.store.control import EngineStatus, engine_status
from erpsync_tui.store.models import Conflict
from erpsync_tui.tui import data
from erpsync_tui.tui.modals import ConfirmScreen, PromptScreen
from erpsync_tui.tui.safe import display_value, safe_text
from erpsync_tui.tui.screens.base import EngineHeader, PollingScreen

STATE_LABEL = {"conflict": ("≠ BOTH", "bold red"), "cloud_changed": ("◀ {a}", "yellow"),
               "local_changed": ("{b} ▶", "yellow"), "both_changed": ("= both", "dim"), "same": ("", "dim")}
DETAIL_LINES = 200


@dataclass(slots=True)
class Resolution:
    """What the operator chose so far for one conflict: a whole side, or per-field choices."""

    take: str | None = None
    choices: dict[str, str | tuple[str, Any]] = field(default_factory=dict)


class ConflictsScreen(PollingScreen):
    SCREEN_NAME = "conflicts"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "choose('a')", "Field←cloud", id="take_cloud_field"),
        Binding("l", "choose('b')", "Field←local", id="take_local_field"),
        Binding("C", "take('a')", "All cloud", id="take_cloud_all"),
        Binding("L", "take('b')", "All local", id="take_local_all"),
        Binding("e", "edit", "Edit value", id="edit_value"),
        Binding("u", "undo", "Clear choice", id="clear_choice", show=False),
        Binding("a", "apply", "Apply", id="apply_resolution"),
        Binding("n", "step(1)", "Next", id="next_conflict"),
        Binding("p", "step(-1)", "Prev", id="previous_conflict"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[data.ConflictRow] = []
        self.cache: dict[int, Conflict] = {}
        self.resolutions: dict[int, Resolution] = {}
        self.selected_id: int | None = None
        self.shown_id: int | None = None
        self.diffs: dict[str, docs.FieldDiff] = {}
        self.pending_select: int | None = None

    # ------------------------------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield EngineHeader(id="header")
        yield DataTable(id="conflict-list", cursor_type="row", zebra_stripes=True)
        yield Static(id="conflict-title")
        yield DataTable(id="diff", cursor_type="row")
        with VerticalScroll(id="detail-pane"):
            yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        a, b = self.console_app.pair
        self.query_one("#conflict-list", DataTable).add_columns("#", "doctype", "document", "fields", "opened")
        self.query_one("#diff", DataTable).add_columns("state", "field", a, b, "base", "pick")
        self.query_one("#conflict-list").border_title = "Open conflicts"
        self.query_one("#diff").border_title = "Diff — differing fields first"
        super().on_mount()
        self.query_one("#diff").focus()

    @property
    def pair(self) -> tuple[str, str]:
        return self.console_app.pair

    # ------------------------------------------------------------------------------------------ data

    def fetch(self) -> tuple[EngineStatus, Any]:
        db = self.console_app.db
        status = engine_status(db, now=self.console_app.now())
        rows = data.conflict_rows(db)
        wanted = self.pending_select or self.selected_id or (rows[0].id if rows else None)
        ids = {r.id for r in rows}
        if wanted not in ids:
            wanted = rows[0].id if rows else None
        full = None
        if wanted is not None and wanted not in self.cache:
            full = data.conflict(db, wanted)
        return status, (rows, wanted, full)

    def show(self, payload: tuple[list[data.ConflictRow], int | None, Conflict | None]) -> None:
        rows, wanted, full = payload
        if full is not None and full.id is not None:
            self.cache[full.id] = full
        self.rows = rows
        ids = {r.id for r in rows}
        for gone in [cid for cid in self.cache if cid not in ids]:
            self.cache.pop(gone, None)
        self._sync_list(rows)
        if self.pending_select in ids:
            self.pending_select = None
        self.selected_id = wanted
        self._move_list_cursor(wanted)
        if wanted != self.shown_id or (wanted is not None and wanted in self.cache and not self.diffs):
            self._show_conflict(wanted)

    def select_conflict(self, conflict_id: int) -> None:
        """Jump here from elsewhere (a log line); takes effect at the next load."""
        self.pending_select = conflict_id
        self.selected_id = conflict_id
        if self.is_mounted:
            self.poll_now()

    # ------------------------------------------------------------------------------------------ list

    def _sync_list(self, rows: list[data.ConflictRow]) -> None:
        table = self.query_one("#conflict-list", DataTable)
        keys = {str(r.id) for r in rows}
        with self.app.batch_update():
            for key in [k.value for k in list(table.rows) if k.value not in keys]:
                table.remove_row(key)
            for row in rows:
                if str(row.id) not in table.rows:
                    table.add_row(*self._list_cells(row), key=str(row.id))
                else:
                    picked = self._list_cells(row)
                    table.update_cell(str(row.id), table.ordered_columns[3].key, picked[3])
        table.border_subtitle = f"{len(rows)} open" + (" (first 500)" if len(rows) >= 500 else "")

    def _list_cells(self, row: data.ConflictRow) -> list[Any]:
        a, b = self.pair
        names = row.names.get(a) or ""
        if row.names.get(b) and row.names.get(b) != names:
            names = f"{names} / {row.names.get(b)}"
        chosen = self.resolutions.get(row.id)
        mark = " ✎" if chosen and (chosen.take or chosen.choices) else ""
        return [Text(str(row.id)), safe_text(row.doctype), safe_text(names, width=32),
                safe_text(", ".join(row.fields) + mark, width=26), Text(data.short_time(row.created_at))]

    def _move_list_cursor(self, conflict_id: int | None) -> None:
        table = self.query_one("#conflict-list", DataTable)
        if conflict_id is None or str(conflict_id) not in table.rows:
            return
        index = table.get_row_index(str(conflict_id))
        if table.cursor_row != index:
            table.move_cursor(row=index, animate=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "conflict-list" and event.row_key.value is not None:
            chosen = int(event.row_key.value)
            if chosen != self.selected_id:
                self.selected_id = chosen
                if chosen in self.cache:
                    self._show_conflict(chosen)
                else:
                    self.poll_now()
        elif event.data_table.id == "diff":
            self._show_detail(event.row_key.value)

    # ------------------------------------------------------------------------------------------ diff

    def _show_conflict(self, conflict_id: int | None) -> None:
        table = self.query_one("#diff", DataTable)
        title = self.query_one("#conflict-title", Static)
        conflict = self.cache.get(conflict_id) if conflict_id is not None else None
        self.shown_id = conflict_id if conflict is not None else None
        table.clear()
        self.diffs = {}
        if conflict is None:
            title.update(Text("✓ no open conflicts" if not self.rows else "loading…", style="bold"))
            self.query_one("#detail", Static).update("")
            return
        a, b = self.pair
        self.diffs = {d.field: d for d in docs.diff_documents(conflict.versions.get(a, {}),
                                                               conflict.versions.get(b, {}), conflict.base)}
        width = max((self.size.width - 46) // 3, 8)
        with self.app.batch_update():
            for diff in self.diffs.values():
                table.add_row(*self._diff_cells(diff, width), key=diff.field)
        self._update_title(conflict)
        if self.diffs:
            table.move_cursor(row=0, animate=False)
            self._show_detail(next(iter(self.diffs)))

    def _diff_cells(self, diff: docs.FieldDiff, width: int) -> list[Text]:
        a, b = self.pair
        label, style = STATE_LABEL[diff.status]
        row_style = "bold" if diff.status == "conflict" else ("" if diff.differs else "dim")
        return [Text(label.format(a=a, b=b), style=style), safe_text(diff.field, row_style, width=18),
                self._value_cell(diff.cloud_value, width, row_style),
                self._value_cell(diff.local_value, width, row_style),
                self._value_cell(diff.base_value, width, "dim"), self._pick_cell(diff.field)]

    @staticmethod
    def _value_cell(value: Any, width: int, style: str) -> Text:
        if docs.is_child_table(value):
            return Text(f"[{len(value)} rows]", style=style or "italic")
        if value is None:
            return Text("∅", style="dim")
        return safe_text(value, style, width=width)

    def _pick_cell(self, field_name: str) -> Text:
        resolution = self.resolutions.get(self.shown_id or -1)
        if resolution is None:
            return Text("")
        if resolution.take:
            return Text(f"all {resolution.take}", style="bold cyan")
        choice = resolution.choices.get(field_name)
        if choice is None:
            return Text("")
        if isinstance(choice, tuple):
            return Text("✎ edited", style="bold cyan")
        return Text(f"✓ {choice}", style="bold cyan")

    def _update_title(self, conflict: Conflict) -> None:
        a, b = self.pair
        title = Text(f"#{conflict.id} ", style="bold")
        title.append_text(safe_text(conflict.doctype, "bold"))
        title.append(" ")
        name_a, name_b = conflict.names.get(a, "?"), conflict.names.get(b, "?")
        title.append_text(safe_text(name_a if name_a == name_b else f"{a}: {name_a}  {b}: {name_b}", width=50))
        conflicting = [f for f, d in self.diffs.items() if d.status == "conflict"]
        resolution = self.resolutions.get(conflict.id or -1)
        if resolution and resolution.take:
            title.append(f"  → take all from {resolution.take}", style="bold cyan")
        else:
            left = [f for f in conflicting if not resolution or f not in resolution.choices]
            title.append(f"  {len(conflicting)} conflicting", style="bold red" if left else "green")
            title.append(f", {len(left)} to choose" if left else ", all chosen — a to apply")
        self.query_one("#conflict-title", Static).update(title)

    def _refresh_picks(self) -> None:
        table = self.query_one("#diff", DataTable)
        column = table.ordered_columns[5].key
        with self.app.batch_update():
            for field_name in self.diffs:
                table.update_cell(field_name, column, self._pick_cell(field_name))
        conflict = self.cache.get(self.shown_id or -1)
        if conflict is not None:
            self._update_title(conflict)
            row = next((r for r in self.rows if r.id == conflict.id), None)
            if row is not None:
                self._sync_list(self.rows)

    # ------------------------------------------------------------------------------------------ detail

    def _show_detail(self, field_name: str | None) -> None:
        detail = self.query_one("#detail", Static)
        diff = self.diffs.get(field_name or "")
        if diff is None:
            detail.update("")
            return
        a, b = self.pair
        if diff.is_child_table:
            detail.update(self._rows_detail(diff, a, b))
        elif diff.is_long_text:
            detail.update(self._text_detail(diff, a, b))
        else:
            out = _field_heading(diff.field, "")
            for label, value in ((a, diff.cloud_value), (b, diff.local_value), ("base", diff.base_value)):
                out.append(f"{label:>8}: ", style="dim")
                out.append_text(safe_text(value, single_line=False) if value is not None else Text("∅", style="dim"))
                out.append("\n")
            detail.update(out)

    @staticmethod
    def _text_detail(diff: docs.FieldDiff, a: str, b: str) -> Text:
        lines = docs.text_line_diff(display_value(diff.cloud_value), display_value(diff.local_value),
                                    from_label=a, to_label=b)
        out = _field_heading(diff.field, f" — line diff {a} → {b}")
        for line in lines[:DETAIL_LINES]:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
            out.append_text(safe_text(line, style))
            out.append("\n")
        return out

    @staticmethod
    def _rows_detail(diff: docs.FieldDiff, a: str, b: str) -> Text:
        cloud = diff.cloud_value if isinstance(diff.cloud_value, list) else []
        local = diff.local_value if isinstance(diff.local_value, list) else []
        rows = docs.diff_child_rows(cloud, local)
        out = _field_heading(diff.field, f" — {len(rows)} rows, differing rows only")
        shown = 0
        for row in rows:
            if row.status == "same":
                continue
            shown += 1
            if shown > DETAIL_LINES:
                out.append("…\n", style="dim")
                break
            out.append(f"row {row.position} ", style="bold")
            if row.status != "changed":
                out.append(f"only on {a if row.status == 'cloud_only' else b}\n", style="yellow")
                continue
            for name in row.changed_fields:
                out.append_text(safe_text(f"  {name}: ", "dim"))
                out.append_text(safe_text((row.cloud_row or {}).get(name), "red", width=40))
                out.append(" → ")
                out.append_text(safe_text((row.local_row or {}).get(name), "green", width=40))
            out.append("\n")
        if not shown:
            out.append("every row is the same", style="dim")
        return out

    # ------------------------------------------------------------------------------------------ actions

    def _current_field(self) -> str | None:
        table = self.query_one("#diff", DataTable)
        if not self.diffs or table.cursor_row < 0 or table.cursor_row >= table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key

    def _resolution(self) -> Resolution | None:
        if self.shown_id is None:
            self.notify("no conflict selected")
            return None
        return self.resolutions.setdefault(self.shown_id, Resolution())

    def action_choose(self, side: str) -> None:
        field_name, resolution = self._current_field(), self._resolution()
        if field_name is None or resolution is None:
            return
        resolution.take = None
        resolution.choices[field_name] = self.pair[0] if side == "a" else self.pair[1]
        self._refresh_picks()
        self._advance_to_next_conflicting(field_name)

    def _advance_to_next_conflicting(self, field_name: str) -> None:
        """After a choice, move to the next differing field (how an operator works down the list)."""
        names = list(self.diffs)
        table = self.query_one("#diff", DataTable)
        for index in range(names.index(field_name) + 1, len(names)):
            if self.diffs[names[index]].differs:
                table.move_cursor(row=index, animate=False)
                return

    def action_take(self, side: str) -> None:
        resolution = self._resolution()
        if resolution is None:
            return
        resolution.take = self.pair[0] if side == "a" else self.pair[1]
        resolution.choices.clear()
        self._refresh_picks()

    def action_undo(self) -> None:
        if self.shown_id is not None:
            self.resolutions.pop(self.shown_id, None)
            self._refresh_picks()

    def action_edit(self) -> None:
        field_name, resolution = self._current_field(), self._resolution()
        if field_name is None or resolution is None:
            return
        diff = self.diffs[field_name]
        if diff.is_child_table:
            self.notify("child tables cannot be edited here; take one side with c / l", severity="warning")
            return
        current = resolution.choices.get(field_name)
        value = current[1] if isinstance(current, tuple) else diff.local_value if current == self.pair[1] \
            else diff.cloud_value
        original = diff.cloud_value if diff.cloud_value is not None else diff.local_value

        def done(text: str | None) -> None:
            if text is None:
                return
            resolution.take = None
            resolution.choices[field_name] = ("value", parse_edited(text, original))
            self._refresh_picks()

        self.app.push_screen(PromptScreen(f"Edit {field_name}", value=display_value(value),
                                          hint="enter = keep this value for both sites, esc = cancel"), done)

    def action_step(self, delta: int) -> None:
        if not self.rows:
            return
        ids = [r.id for r in self.rows]
        index = ids.index(self.selected_id) if self.selected_id in ids else 0
        target = ids[(index + delta) % len(ids)]
        self._move_list_cursor(target)

    def action_apply(self) -> None:
        conflict = self.cache.get(self.shown_id or -1)
        resolution = self.resolutions.get(self.shown_id or -1)
        if conflict is None or resolution is None or not (resolution.take or resolution.choices):
            self.notify("choose first: c / l per field, C / L for a whole side, e to edit", severity="warning")
            return
        params = self._params(conflict, resolution)
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

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.console_app.submit("resolve", params, target=f"conflict #{conflict.id}")
                self.resolutions.pop(conflict.id or -1, None)
                self.action_step(1)
                self.poll_now()

        self.app.push_screen(ConfirmScreen(question, title="Apply resolution"), confirmed)

    def _params(self, conflict: Conflict, resolution: Resolution) -> dict[str, Any] | None:
        a, b = self.pair
        if resolution.take:
            return {"conflict_id": conflict.id, "take": resolution.take, "choices": {}}
        labelled = {k: ("cloud" if v == a else "local" if v == b else v) for k, v in resolution.choices.items()}
        try:
            docs.apply_resolution(conflict.base, conflict.versions.get(a, {}), conflict.versions.get(b, {}),
                                  labelled)
        except ValueError as exc:
            self.notify(f"cannot apply yet: {exc}", severity="warning", markup=False)
            return None
        choices = {k: (list(v) if isinstance(v, tuple) else v) for k, v in resolution.choices.items()}
        return {"conflict_id": conflict.id, "take": None, "choices": choices}


def parse_edited(text: str, original: Any) -> Any:
    """An edited value keeps the field's type: numbers and JSON stay numbers and JSON, text stays text."""
    if isinstance(original, str) or original is None:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _field_heading(field_name: str, suffix: str) -> Text:
    """A field name comes from the ERP too: escaped like any value, never interpreted."""
    heading = safe_text(field_name, "bold")
    heading.append(f"{suffix}\n", style="bold")
    return heading

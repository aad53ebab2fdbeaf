"""The pane under the diff: the line under the cursor in full — a value, a text's line diff, a row stretch."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from erpsync_tui.engine import document_merge as merging
from erpsync_tui.tui.safe import display_value, safe_text
from erpsync_tui.tui.widgets.diff_view import DiffLine
from erpsync_tui.tui.widgets.resolution import ConflictModel, hunk_name

DETAIL_LINES = 200
MOVED = {"conflict": "changed on both sites", "cloud_changed": "changed on {a} only",
         "local_changed": "changed on {b} only", "both_changed": "changed alike on both sites", "same": "the same"}


class DetailPane(VerticalScroll):
    DEFAULT_CSS = """
    DetailPane {
        height: 5;
        border-top: solid $secondary 50%;
        padding: 0 1;
    }
    DetailPane > Static {
        width: 100%;
    }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="detail")

    def show(self, model: ConflictModel | None, line: DiffLine | None) -> None:
        self.query_one("#detail", Static).update(detail_text(model, line) if model and line else Text(""))


def detail_text(model: ConflictModel, line: DiffLine) -> Text:
    a, b = model.pair
    if line.kind == "note":
        return Text(f"{line.field}: rows not listed are the same on both sites", style="dim")
    if line.kind == "field":
        diff = model.fields[line.field]
        if diff.is_child_table:
            return _table_summary(model, line.field)
        if diff.is_long_text:
            return _text_detail(diff, a, b)
        return _values(_heading(line.field, ""), ((a, diff.cloud_value), (b, diff.local_value),
                                                  ("base", diff.base_value)))
    hunk = model.hunks[line.field][line.hunk or 0]
    if line.kind == "cell":
        cell = next(d for d in hunk.row_fields() if d.field == line.cell)
        out = _heading(f"{line.field} {hunk_name(hunk)} · {cell.field}", f" — {MOVED.get(cell.status, '')}"
                       .format(a=a, b=b))
        return _values(out, ((a, cell.cloud_value), (b, cell.local_value), ("base", cell.base_value)))
    moved = "rows added on both sites (b keeps both)" if hunk.added_on_both else MOVED[hunk.status]
    out = _heading(f"{line.field} {hunk_name(hunk)}", f" — {moved.format(a=a, b=b)}")
    for label, rows in ((a, hunk.cloud), (b, hunk.local), ("base", hunk.base)):
        out.append(f"{label:>8}: ", style="dim")
        if not rows:
            out.append("∅ no row\n", style="dim")
            continue
        for index, row in enumerate(rows[:DETAIL_LINES]):
            if index:
                out.append(" " * 10)
            out.append_text(safe_text(" ".join(f"{k}={display_value(v)}" for k, v in row.items()), width=400))
            out.append("\n")
    return out


def _table_summary(model: ConflictModel, name: str) -> Text:
    hunks = model.hunks.get(name, [])
    conflicting = sum(1 for h in hunks if h.status == "conflict")
    one_sided = sum(1 for h in hunks if h.status in ("cloud_changed", "local_changed"))
    same = sum(len(h.cloud) for h in hunks if not h.differs)
    out = _heading(name, f" — rows changed on both sites: {conflicting}, on one site: {one_sided}, "
                         f"the same: {same}")
    out.append("c / l on this line takes the whole table; on a row line below, that row; b keeps rows added "
               "on both sites", style="dim")
    return out


def _text_detail(diff: merging.FieldDiff, a: str, b: str) -> Text:
    lines = merging.text_line_diff(display_value(diff.cloud_value), display_value(diff.local_value),
                                from_label=a, to_label=b)
    out = _heading(diff.field, f" — line diff {a} → {b}")
    for line in lines[:DETAIL_LINES]:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.append_text(safe_text(line, style))
        out.append("\n")
    return out


def _values(out: Text, values: tuple[tuple[str, Any], ...]) -> Text:
    for label, value in values:
        out.append(f"{label:>8}: ", style="dim")
        out.append_text(safe_text(value, single_line=False) if value is not None else Text("∅", style="dim"))
        out.append("\n")
    return out


def _heading(name: str, suffix: str) -> Text:
    """A field name comes from the ERP too: escaped like any value, never interpreted."""
    heading = safe_text(name, "bold")
    heading.append(f"{suffix}\n", style="bold")
    return heading

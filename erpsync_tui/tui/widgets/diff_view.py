"""The conflict diff: fields side by side, and the rows of a differing child table as rows of their own.

Lines, differing first: one per field (state | field | first site | second site | base | pick); under a child
table that differs, one per aligned row stretch that differs (conflicting rows first, then rows one site
changed), and under a row changed on both sites one line per field of that row. Each differing stretch has its
unchanged neighbour rows (the one before and the one after it, dimmed and labelled "same") as context, so the
operator sees where in the table it sits. Other rows the same on both sites are counted, not drawn, so a
1,000-row document renders only what differs and its neighbours.

The operator's choices are the `resolution` reactive; every change posts `DiffView.ResolutionChanged`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import DataTable

from erpsync_tui.engine import document_merge as merging
from erpsync_tui.engine import documents as docs
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.widgets.resolution import BOTH, ConflictModel, Resolution, hunk_name

STATE_LABEL = {"conflict": ("≠ BOTH", "bold red"), "cloud_changed": ("◀ {a}", "yellow"),
               "local_changed": ("{b} ▶", "yellow"), "both_changed": ("= both", "dim"),
               "merged": ("⇄ rows merge", "green"), "same": ("", "dim")}
HUNK_ORDER = {"conflict": 0, "cloud_changed": 1, "local_changed": 1, "both_changed": 2, "same": 3}


@dataclass(frozen=True, slots=True)
class DiffLine:
    """What one line of the diff stands for: a field, a row stretch of a table, or a field inside a row."""

    kind: str  # "field" | "hunk" | "cell" | "context" (an unchanged neighbour row) | "note"
    field: str
    hunk: int | None = None
    cell: str | None = None
    beside: int | None = None  # a context line: the differing hunk it stands next to


class DiffView(DataTable[Any]):
    DEFAULT_CSS = """
    DiffView {
        height: 1fr;
        min-height: 5;
        border: round $accent 50%;
    }
    """

    class ResolutionChanged(Message):
        def __init__(self, diff_view: DiffView, conflict_id: int | None, resolution: Resolution) -> None:
            super().__init__()
            self.diff_view, self.conflict_id, self.resolution = diff_view, conflict_id, resolution

        @property
        def control(self) -> DiffView:
            return self.diff_view

    resolution: reactive[Resolution] = reactive(Resolution, always_update=True, init=False)

    COLUMNS: ClassVar[tuple[str, ...]] = ("state", "field", "a", "b", "base", "pick")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row")
        self.model: ConflictModel | None = None
        self.conflict_id: int | None = None
        self.lines: dict[str, DiffLine] = {}
        self.value_width = 12

    # ------------------------------------------------------------------------------------------ building

    def setup_columns(self, pair: tuple[str, str]) -> None:
        a, b = pair
        for key, label in zip(self.COLUMNS, ("state", "field", a, b, "base", "pick"), strict=True):
            self.add_column(label, key=key)

    def show_conflict(self, conflict_id: int | None, model: ConflictModel | None, resolution: Resolution,
                      width: int) -> None:
        self.conflict_id, self.model = conflict_id, model
        self.value_width = max((width - 50) // 3, 8)
        self.set_reactive(DiffView.resolution, resolution)
        self.clear()
        self.lines = {}
        # Column widths are measured here, from this conflict's cells: clear() keeps the widths measured for the
        # conflicts shown before (the layout depended on them), and the table's own measuring happens on a later
        # idle, so the first frame would show the columns at their labels' width.
        widths = [column.label.cell_len for column in self.ordered_columns]
        if model is not None:
            with self.app.batch_update():
                for line_key, line in self._layout(model):
                    cells = self._cells(line)
                    self.lines[line_key] = line
                    self.add_row(*cells, key=line_key)
                    widths = [max(w, _cell_width(cell)) for w, cell in zip(widths, cells, strict=False)]
        for column, content_width in zip(self.ordered_columns, widths, strict=False):
            column.content_width = content_width
        if model is None:
            return
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def _layout(self, model: ConflictModel) -> list[tuple[str, DiffLine]]:
        out: list[tuple[str, DiffLine]] = []
        for name in model.fields:
            out.append((f"f|{name}", DiffLine("field", name)))
            hunks = model.hunks.get(name)
            if not hunks:
                continue
            differing = sorted((h for h in hunks if h.differs),
                               key=lambda h: (HUNK_ORDER[h.status], h.cloud_position))
            shown: set[int] = set()
            for hunk in differing:
                before, after = _unchanged_neighbours(hunks, hunk.index)
                if before is not None and not (out and out[-1][1].kind == "context" and out[-1][1].hunk == before):
                    out.append(_context_line(name, before, hunk.index))  # (unless just shown after the previous)
                out.append((f"h|{name}|{hunk.index}", DiffLine("hunk", name, hunk.index)))
                if hunk.status == "conflict" and hunk.single_row:
                    for cell in hunk.row_fields():
                        if cell.differs:
                            out.append((f"c|{name}|{hunk.index}|{cell.field}",
                                        DiffLine("cell", name, hunk.index, cell.field)))
                if after is not None:
                    out.append(_context_line(name, after, hunk.index))
                shown.update(h for h in (before, after) if h is not None)
            if _same_rows(hunks, shown):
                out.append((f"n|{name}", DiffLine("note", name)))
        return out

    # ------------------------------------------------------------------------------------------ cells

    def _cells(self, line: DiffLine) -> list[Text]:
        assert self.model is not None
        a, b = self.model.pair
        width = self.value_width
        if line.kind == "field":
            diff = self.model.fields[line.field]
            label, style = STATE_LABEL[diff.status]
            row_style = "bold" if diff.status == "conflict" else ("" if diff.differs else "dim")
            return [Text(label.format(a=a, b=b), style=style), safe_text(line.field, row_style, width=18),
                    _value_cell(diff.cloud_value, width, row_style), _value_cell(diff.local_value, width, row_style),
                    _value_cell(diff.base_value, width, "dim"), self._pick_cell(line)]
        if line.kind == "note":
            hunks = self.model.hunks[line.field]
            shown = {ln.hunk for ln in self.lines.values() if ln.kind == "context" and ln.field == line.field}
            same = _same_rows(hunks, {h for h in shown if h is not None})
            return [Text(""), Text(f"└ {same} same", style="dim"), Text("rows not listed", style="dim"), Text(""),
                    Text(""), Text("")]
        hunk = self.model.hunks[line.field][line.hunk or 0]
        if line.kind == "context":
            keys = _differing_keys(self.model.hunks[line.field][line.beside or 0])
            return [Text("· same", style="dim"), safe_text(f"└ {hunk_name(hunk)}", "dim", width=18),
                    _rows_cell(hunk.cloud, keys, width, "dim"), _rows_cell(hunk.local, keys, width, "dim"),
                    _rows_cell(hunk.base, keys, width, "dim"), Text("")]
        if line.kind == "hunk":
            label, style = ("+ BOTH added", "bold red") if hunk.added_on_both else STATE_LABEL[hunk.status]
            keys = _differing_keys(hunk)
            return [Text(label.format(a=a, b=b), style=style),
                    safe_text(f"└ {hunk_name(hunk)}", "bold" if hunk.status == "conflict" else "", width=18),
                    _rows_cell(hunk.cloud, keys, width), _rows_cell(hunk.local, keys, width),
                    _rows_cell(hunk.base, keys, width, "dim"), self._pick_cell(line)]
        cell = next(d for d in hunk.row_fields() if d.field == line.cell)
        label, style = STATE_LABEL[cell.status]
        return [Text(label.format(a=a, b=b), style=style), safe_text(f"   · {cell.field}", width=18),
                _value_cell(cell.cloud_value, width, ""), _value_cell(cell.local_value, width, ""),
                _value_cell(cell.base_value, width, "dim"), self._pick_cell(line)]

    def _pick_cell(self, line: DiffLine) -> Text:
        resolution = self.resolution
        if resolution.take:
            return Text(f"all {resolution.take}", style="bold cyan")
        if line.kind == "field":
            choice = resolution.choices.get(line.field)
            if choice is None:
                picks = resolution.rows.get(line.field)
                return Text(f"{len(picks)} row picks", style="cyan") if picks else Text("")
            return Text("✎ edited", style="bold cyan") if isinstance(choice, tuple) else Text(f"✓ {choice}",
                                                                                              style="bold cyan")
        if line.field in resolution.choices:
            return Text("(table)", style="dim")
        pick = resolution.rows.get(line.field, {}).get(line.hunk or 0)
        if pick is None:
            return Text("")
        if line.kind == "hunk":
            if isinstance(pick, dict):
                return Text("✓ by field", style="bold cyan")
            return Text(f"✓ {pick}", style="bold cyan")
        if isinstance(pick, dict) and line.cell in pick:
            return Text(f"✓ {pick[line.cell]}", style="bold cyan")
        if isinstance(pick, str):
            return Text(f"(row {pick})", style="cyan")
        return Text("")

    def refresh_picks(self) -> None:
        column = self.ordered_columns[5].key
        with self.app.batch_update():
            for key, line in self.lines.items():
                self.update_cell(key, column, self._pick_cell(line))

    # ------------------------------------------------------------------------------------------ choosing

    def current_line(self) -> DiffLine | None:
        if not self.lines or not 0 <= self.cursor_row < self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.lines.get(key or "")

    def choose(self, side: str) -> str | None:
        """Pick `side` (a site name, or "both") for the line under the cursor; a message when it cannot."""
        line, model = self.current_line(), self.model
        if line is None or model is None:
            return "no field under the cursor"
        resolution = self.resolution.copy()
        resolution.take = None
        if line.kind in ("note", "context"):
            return "these rows are the same on both sites: nothing to choose"
        if line.kind == "field":
            if side == BOTH:
                return "'both' applies to rows added on each site: move to such a row"
            resolution.choices[line.field] = side
            resolution.rows.pop(line.field, None)
        else:
            resolution.choices.pop(line.field, None)
            hunk = model.hunks[line.field][line.hunk or 0]
            picks = resolution.rows.setdefault(line.field, {})
            if side == BOTH and not hunk.added_on_both:
                return "'both' only where rows were added on each site"
            if line.kind == "hunk":
                picks[hunk.index] = side
            else:
                current = picks.get(hunk.index)
                fields = dict(current) if isinstance(current, dict) else {}
                if side == BOTH:
                    return "pick a site for a field"
                fields[line.cell or ""] = side
                picks[hunk.index] = fields
        self.resolution = resolution
        self._advance()
        return None

    def take_all(self, side: str | None) -> None:
        self.resolution = Resolution(take=side) if side else Resolution()

    def set_value(self, field_name: str, value: Any) -> None:
        resolution = self.resolution.copy()
        resolution.take = None
        resolution.choices[field_name] = ("value", value)
        self.resolution = resolution

    def _advance(self) -> None:
        """After a choice, move to the next line that still needs one (how an operator works down the list)."""
        keys = list(self.lines)
        for index in range(self.cursor_row + 1, len(keys)):
            if self._needs_choice(self.lines[keys[index]]):
                self.move_cursor(row=index, animate=False)
                return

    def _needs_choice(self, line: DiffLine) -> bool:
        assert self.model is not None
        if line.kind == "field":
            return self.model.fields[line.field].status == "conflict" and line.field not in self.model.hunks
        if line.kind in ("note", "context") or line.field in self.resolution.choices:
            return False
        pick = self.resolution.rows.get(line.field, {}).get(line.hunk or 0)
        if line.kind == "hunk":
            return self.model.hunks[line.field][line.hunk or 0].status == "conflict" and pick is None
        return not isinstance(pick, str) and not (isinstance(pick, dict) and line.cell in pick)

    def watch_resolution(self, resolution: Resolution) -> None:
        if self.model is not None:
            self.refresh_picks()
        self.post_message(self.ResolutionChanged(self, self.conflict_id, resolution))


def _unchanged_neighbours(hunks: list[merging.RowHunk], index: int) -> tuple[int | None, int | None]:
    """The hunks just before and just after hunk `index` in table order, each only if it is unchanged."""
    before = index - 1 if index > 0 and not hunks[index - 1].differs else None
    after = index + 1 if index + 1 < len(hunks) and not hunks[index + 1].differs else None
    return before, after


def _context_line(name: str, hunk: int, beside: int) -> tuple[str, DiffLine]:
    # A row between two differing stretches is context for both: one line under each, told apart by `beside`.
    return f"x|{name}|{hunk}|{beside}", DiffLine("context", name, hunk, beside=beside)


def _same_rows(hunks: list[merging.RowHunk], shown: set[int]) -> int:
    """Rows the same on both sites that no context line shows."""
    return sum(len(h.cloud) for h in hunks if not h.differs and h.index not in shown)


def _cell_width(cell: Any) -> int:
    """Cells are Rich Text (one line each): their width in terminal cells."""
    return max((Text(line).cell_len for line in str(cell.plain if isinstance(cell, Text) else cell).split("\n")),
               default=0)


def _value_cell(value: Any, width: int, style: str) -> Text:
    if docs.is_child_table(value):
        return Text(f"[{len(value)} rows]", style=style or "italic")
    if value is None:
        return Text("∅", style="dim")
    return safe_text(value, style, width=width)


def _differing_keys(hunk: merging.RowHunk) -> list[str]:
    """The row fields worth showing in a one-line summary: those that differ between the versions."""
    rows = [r for r in (*hunk.cloud[:1], *hunk.local[:1], *hunk.base[:1])]
    keys = sorted({k for r in rows for k in r})
    differing = [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]
    return differing or keys


def _rows_cell(rows: list[dict[str, Any]], keys: list[str], width: int, style: str = "") -> Text:
    if not rows:
        return Text("∅ no row", style="dim")
    first = " ".join(f"{k}={docs_value(rows[0].get(k))}" for k in keys)
    more = f" +{len(rows) - 1} rows" if len(rows) > 1 else ""
    return safe_text(first + more, style, width=width)


def docs_value(value: Any) -> str:
    return "∅" if value is None else str(value)

"""What an operator chose for one conflict so far — pure data and rules, no widgets (tested on its own).

Choices name sites by their configured names (the pair's first and second site). A whole document (`take`),
a field (`choices`: a site, or ("value", v) for an edited value), or — inside a child table — one aligned
stretch of rows (`rows[field][hunk index]`: a site, "both", or {row field: site}).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from erpsync_tui.engine import document_merge as merging

BOTH = "both"


@dataclass(slots=True)
class Resolution:
    take: str | None = None
    choices: dict[str, str | tuple[str, Any]] = field(default_factory=dict)
    rows: dict[str, dict[int, merging.RowPick]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.take or self.choices or any(self.rows.values()))

    def copy(self) -> Resolution:
        rows = {name: {index: dict(pick) if isinstance(pick, dict) else pick for index, pick in picks.items()}
                for name, picks in self.rows.items()}
        return Resolution(self.take, dict(self.choices), rows)


@dataclass(slots=True)
class ConflictModel:
    """One conflict's diff: its fields and, for every child table that differs, its aligned row hunks."""

    pair: tuple[str, str]
    base: dict[str, Any] | None
    versions: dict[str, dict[str, Any]]
    fields: dict[str, merging.FieldDiff]
    hunks: dict[str, list[merging.RowHunk]]

    @classmethod
    def build(cls, pair: tuple[str, str], versions: dict[str, dict[str, Any]],
              base: dict[str, Any] | None) -> ConflictModel:
        a, b = pair
        fields = {d.field: d for d in merging.diff_documents(versions.get(a, {}), versions.get(b, {}), base)}
        hunks = {name: merging.align_rows(_rows(d.base_value), _rows(d.cloud_value), _rows(d.local_value))
                 for name, d in fields.items() if d.is_child_table and d.differs}
        return cls(pair, base, versions, fields, hunks)

    def label(self, site: str) -> str:
        """`document_merge` speaks of the pair's first/second site as "cloud"/"local"."""
        return "cloud" if site == self.pair[0] else "local" if site == self.pair[1] else site

    def open_items(self, resolution: Resolution | None) -> list[str]:
        """What is still to choose: conflicting fields, and conflicting rows of tables taken row by row."""
        if resolution is not None and resolution.take:
            return []
        chosen = resolution.choices if resolution else {}
        picks_by_table = resolution.rows if resolution else {}
        left: list[str] = []
        for name, diff in self.fields.items():
            if name in chosen:
                continue
            if name in self.hunks and diff.status in ("conflict", "merged"):
                picks = picks_by_table.get(name, {})
                for hunk in self.hunks[name]:
                    if hunk.status == "conflict" and not _hunk_decided(hunk, picks.get(hunk.index)):
                        left.append(f"{name} {_hunk_name(hunk)}")
            elif diff.status == "conflict":
                left.append(name)
        return left

    def choices_for_engine(self, resolution: Resolution) -> dict[str, Any]:
        """Per-field choices the engine's `apply_resolution` takes: tables picked row by row become values.

        Raises ValueError (with what is left to choose) when the resolution is not complete.
        """
        choices: dict[str, Any] = dict(resolution.choices)
        for name, picks in resolution.rows.items():
            if name in choices or not picks:
                continue
            labelled = {index: ({k: self.label(v) for k, v in pick.items()} if isinstance(pick, dict)
                                else pick if pick == BOTH else self.label(pick)) for index, pick in picks.items()}
            choices[name] = ("value", merging.resolve_rows(self.hunks[name], labelled))
        a, b = self.pair
        engine_labels = {k: (self.label(v) if isinstance(v, str) else v) for k, v in choices.items()}
        merging.apply_resolution(self.base, self.versions.get(a, {}), self.versions.get(b, {}), engine_labels)
        return choices


def _hunk_decided(hunk: merging.RowHunk, pick: merging.RowPick | None) -> bool:
    if pick is None:
        return False
    if not isinstance(pick, dict):
        return True
    (row_fields) = [d.field for d in hunk.row_fields() if d.status == "conflict"]
    return all(name in pick for name in row_fields)


def _hunk_name(hunk: merging.RowHunk) -> str:
    if not hunk.cloud and not hunk.local:
        return f"row {hunk.cloud_position} (removed)"
    if len(hunk.cloud) <= 1 and len(hunk.local) <= 1:
        return f"row {hunk.cloud_position}"
    return f"rows {hunk.cloud_position}–{hunk.cloud_position + max(len(hunk.cloud), 1) - 1}"


def hunk_name(hunk: merging.RowHunk) -> str:
    return _hunk_name(hunk)


def _rows(value: Any) -> list[dict[str, Any]]:
    return value if isinstance(value, list) else []

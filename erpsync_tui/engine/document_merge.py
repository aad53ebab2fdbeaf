"""Three-way merge of documents and of child tables row by row, the diff viewer's comparisons, and operator
resolution.

Built on the normal form of `documents` (which holds normalise, hashing, timestamps, policy and write payloads):
every function here re-normalises its inputs, so passing raw documents is safe. Merge and diff live together
because they need each other: a single-row hunk lists its fields as `diff_documents` does, and the diff viewer
marks a child table "merged" when `merge_rows` can merge it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from erpsync_tui.engine.documents import (
    _normalise_table,
    canonical_json,
    changed_fields,
    is_child_table,
    is_long_text,
    normalise,
)

FieldStatus = Literal["same", "cloud_changed", "local_changed", "both_changed", "merged", "conflict"]
HunkStatus = Literal["same", "cloud_changed", "local_changed", "both_changed", "conflict"]
RowStatus = Literal["same", "changed", "cloud_only", "local_only"]
Choice = str | tuple[str, Any]  # "cloud" | "local" | ("value", <edited value>)


# --------------------------------------------------------------------------------------------- merge


@dataclass(frozen=True, slots=True)
class MergeResult:
    merged: dict[str, Any] | None  # None when any field conflicts
    conflicting_fields: list[str]  # sorted
    ours_changed: set[str]
    theirs_changed: set[str]

    @property
    def clean(self) -> bool:
        return not self.conflicting_fields


def three_way_merge(base: Mapping[str, Any] | None, ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> MergeResult:
    """Field-level three-way merge of normalised documents.

    A field changed on one side only takes that side's value (a removal is a change too); changed identically
    on both sides is fine; changed differently on both sides is a conflict, and then `merged` is None.
    No base (first sync of a pair) means an empty base: fields present on one side only are taken, fields
    present on both with different values conflict. Symmetric in `ours`/`theirs`.
    """
    merged, conflicts = _merge_fields(base, ours, theirs)
    return MergeResult(
        merged=None if conflicts else merged,
        conflicting_fields=conflicts,
        ours_changed=changed_fields(base or {}, ours),
        theirs_changed=changed_fields(base or {}, theirs),
    )


def _merge_fields(
    base: Mapping[str, Any] | None, ours: Mapping[str, Any], theirs: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Merged values of every non-conflicting field, plus the sorted conflicting fields."""
    b, o, t = normalise(base or {}), normalise(ours), normalise(theirs)
    merged: dict[str, Any] = {}
    conflicts: list[str] = []
    for key in sorted(b.keys() | o.keys() | t.keys()):
        bv, ov, tv = b.get(key), o.get(key), t.get(key)  # None == absent in normal form
        if ov == tv or tv == bv:
            value = ov
        elif ov == bv:
            value = tv
        elif (rows := _merged_table(bv, ov, tv)) is not None:
            value = rows or None  # disjoint row edits of a child table merge row by row
        else:
            conflicts.append(key)
            continue
        if value is not None:
            merged[key] = value
    return merged, conflicts


# --------------------------------------------------------------------------------------------- child rows


@dataclass(frozen=True, slots=True)
class RowHunk:
    """One aligned stretch of a child table: some base rows and what each site holds in their place.

    Rows are matched across the three tables by content and order (a longest-common-subsequence alignment of
    whole rows): a row equal on all three is a one-row "same" hunk; between two such rows lies a stretch where
    a site moved. A stretch with as many rows on every side is split row by row, so edits to different rows
    are separate hunks. `cloud`/`local` are the pair's first and second documents (`ours`/`theirs` in
    `three_way_merge`); positions are 1-based, where the stretch starts in each table.
    """

    index: int
    base: list[dict[str, Any]]
    cloud: list[dict[str, Any]]
    local: list[dict[str, Any]]
    status: HunkStatus
    cloud_position: int
    local_position: int

    @property
    def differs(self) -> bool:
        return self.cloud != self.local

    @property
    def added_on_both(self) -> bool:
        """Rows added at the same place on each site, no base row replaced: "both" keeps every one."""
        return self.status == "conflict" and not self.base and bool(self.cloud) and bool(self.local)

    @property
    def single_row(self) -> bool:
        """One row on each site (and at most one in the base): fields inside it can be picked one by one."""
        return len(self.cloud) == 1 and len(self.local) == 1 and len(self.base) <= 1

    @property
    def merged(self) -> list[dict[str, Any]] | None:
        """The rows a clean merge keeps here; None for a conflict."""
        if self.status == "conflict":
            return None
        if self.status == "local_changed":
            return self.local
        return self.cloud

    def row_fields(self) -> list[FieldDiff]:
        """Field by field inside a single-row hunk (differing fields first), as `diff_documents` would."""
        if not self.single_row:
            return []
        return diff_documents(self.cloud[0], self.local[0], self.base[0] if self.base else {})


RowPick = str | Mapping[str, str]  # "cloud" | "local" | "both" | {field: "cloud" | "local"} inside one row


def align_rows(
    base: Sequence[Mapping[str, Any]] | None,
    cloud: Sequence[Mapping[str, Any]] | None,
    local: Sequence[Mapping[str, Any]] | None,
) -> list[RowHunk]:
    """Child tables of the base and both sites as aligned hunks (see `RowHunk`), in table order."""
    b, c, lo = (_normalise_table(rows or [], frozenset()) for rows in (base, cloud, local))
    by_content = _aligned_by_content(b, c, lo)
    if len(b) == len(c) == len(lo):
        # As many rows everywhere: row k is row k (how the engine compares; right among equal rows), unless
        # matching by content explains the edits with fewer conflicts (a row removed and another added).
        by_position: list[RowHunk] = []
        _add_stretch(by_position, b, c, lo, 0, 0)
        if _conflicts(by_position) <= _conflicts(by_content):
            return by_position
    return by_content


def _conflicts(hunks: list[RowHunk]) -> int:
    return sum(1 for hunk in hunks if hunk.status == "conflict")


def _aligned_by_content(
    b: list[dict[str, Any]], c: list[dict[str, Any]], lo: list[dict[str, Any]]
) -> list[RowHunk]:
    hunks: list[RowHunk] = []
    keys = [[canonical_json(row) for row in rows] for rows in (b, c, lo)]
    in_cloud, in_local = _matching_rows(keys[0], keys[1]), _matching_rows(keys[0], keys[2])
    bi = ci = li = 0
    for stable in range(len(b)):
        if stable not in in_cloud or stable not in in_local:
            continue
        cs, ls = in_cloud[stable], in_local[stable]
        _add_stretch(hunks, b[bi:stable], c[ci:cs], lo[li:ls], ci, li)
        _add_hunk(hunks, [b[stable]], [c[cs]], [lo[ls]], "same", cs, ls)
        bi, ci, li = stable + 1, cs + 1, ls + 1
    _add_stretch(hunks, b[bi:], c[ci:], lo[li:], ci, li)
    return hunks


def _matching_rows(base_keys: list[str], side_keys: list[str]) -> dict[int, int]:
    """Base row index → the index of the same row on a site, from difflib's matching blocks (order kept)."""
    matcher = difflib.SequenceMatcher(None, base_keys, side_keys, autojunk=False)
    return {block.a + k: block.b + k for block in matcher.get_matching_blocks() for k in range(block.size)}


def _add_stretch(
    hunks: list[RowHunk], base: list[dict[str, Any]], cloud: list[dict[str, Any]], local: list[dict[str, Any]],
    cloud_at: int, local_at: int,
) -> None:
    if not (base or cloud or local):
        return
    if len(base) == len(cloud) == len(local) > 1:
        # The same number of rows everywhere: rows edited in place, decided one row at a time.
        for k in range(len(base)):
            _add_stretch(hunks, [base[k]], [cloud[k]], [local[k]], cloud_at + k, local_at + k)
        return
    _add_hunk(hunks, base, cloud, local, _stretch_status(base, cloud, local), cloud_at, local_at)


def _stretch_status(base: list[Any], cloud: list[Any], local: list[Any]) -> HunkStatus:
    if cloud == local:
        return "same" if cloud == base else "both_changed"
    if local == base:
        return "cloud_changed"
    if cloud == base:
        return "local_changed"
    return "conflict"


def _add_hunk(
    hunks: list[RowHunk], base: list[dict[str, Any]], cloud: list[dict[str, Any]], local: list[dict[str, Any]],
    status: HunkStatus, cloud_at: int, local_at: int,
) -> None:
    hunks.append(RowHunk(len(hunks), base, cloud, local, status, cloud_at + 1, local_at + 1))


def merge_rows(
    base: Sequence[Mapping[str, Any]] | None,
    ours: Sequence[Mapping[str, Any]] | None,
    theirs: Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]] | None:
    """Row-level three-way merge of a child table; None when some row changed on both sides differently."""
    merged: list[dict[str, Any]] = []
    for hunk in align_rows(base, ours, theirs):
        if hunk.merged is None:
            return None
        merged.extend(hunk.merged)
    return merged


def _merged_table(base: Any, ours: Any, theirs: Any) -> list[dict[str, Any]] | None:
    """`merge_rows` when all three values are child tables (or absent, an empty table); else None."""
    values = (base, ours, theirs)
    if not any(is_child_table(v) for v in values) or not all(v is None or is_child_table(v) for v in values):
        return None
    return merge_rows(base, ours, theirs)


def resolve_rows(hunks: Sequence[RowHunk], picks: Mapping[int, RowPick]) -> list[dict[str, Any]]:
    """A child table from an operator's per-hunk picks over `align_rows` hunks.

    A hunk without a pick keeps its merged rows (a one-sided or agreeing change, or no change); a conflicting
    hunk needs a pick: "cloud" or "local" (that site's rows), "both" (rows added on each site: cloud's then
    local's) or, in a single-row hunk, {field: "cloud" | "local"} (fields not named take the field merge).
    Raises ValueError naming the rows still to choose, or a pick that does not fit its hunk.
    """
    rows: list[dict[str, Any]] = []
    missing: list[str] = []
    for hunk in hunks:
        pick = picks.get(hunk.index)
        if pick is None:
            if hunk.merged is None:
                missing.append(_hunk_label(hunk))
            else:
                rows.extend(hunk.merged)
            continue
        rows.extend(_picked_rows(hunk, pick))
    if missing:
        raise ValueError(f"rows to choose: {', '.join(missing)}")
    return rows


def _picked_rows(hunk: RowHunk, pick: RowPick) -> list[dict[str, Any]]:
    if pick == "cloud":
        return hunk.cloud
    if pick == "local":
        return hunk.local
    if pick == "both":
        if not hunk.added_on_both:
            raise ValueError(f"{_hunk_label(hunk)}: 'both' only where rows were added on each site")
        return hunk.cloud + hunk.local
    if isinstance(pick, Mapping) and hunk.single_row:
        base_row = hunk.base[0] if hunk.base else {}
        merged, conflicts = _merge_fields(base_row, hunk.cloud[0], hunk.local[0])
        left = [name for name in conflicts if name not in pick]
        if left:
            raise ValueError(f"{_hunk_label(hunk)}: fields to choose: {', '.join(left)}")
        for name, side in pick.items():
            source = hunk.cloud[0] if side == "cloud" else hunk.local[0] if side == "local" else None
            if source is None:
                raise ValueError(f"{_hunk_label(hunk)} field {name!r}: pick 'cloud' or 'local', not {side!r}")
            if name in source:
                merged[name] = source[name]
            else:
                merged.pop(name, None)
        return [normalise(merged)]
    raise ValueError(f"{_hunk_label(hunk)}: pick 'cloud', 'local', 'both' or per-field sides, not {pick!r}")


def _hunk_label(hunk: RowHunk) -> str:
    return f"row {hunk.cloud_position}" if len(hunk.cloud) <= 1 else \
        f"rows {hunk.cloud_position}–{hunk.cloud_position + len(hunk.cloud) - 1}"


# --------------------------------------------------------------------------------------------- diff viewer


@dataclass(frozen=True, slots=True)
class FieldDiff:
    """One row of the console's diff viewer. Values are normalised; None means absent/empty."""

    field: str
    cloud_value: Any
    local_value: Any
    base_value: Any
    status: FieldStatus

    @property
    def differs(self) -> bool:
        return self.cloud_value != self.local_value

    @property
    def is_child_table(self) -> bool:
        return any(is_child_table(v) for v in (self.cloud_value, self.local_value, self.base_value))

    @property
    def is_long_text(self) -> bool:
        return is_long_text(self.cloud_value) or is_long_text(self.local_value)


@dataclass(frozen=True, slots=True)
class RowDiff:
    """One child-row position (1-based) compared across the sites; None row = the site has no row there."""

    position: int
    cloud_row: dict[str, Any] | None
    local_row: dict[str, Any] | None
    changed_fields: list[str] = field(default_factory=list)  # sorted
    status: RowStatus = "same"


def diff_documents(
    cloud: Mapping[str, Any], local: Mapping[str, Any], base: Mapping[str, Any] | None
) -> list[FieldDiff]:
    """Every field of either document (or the base), fields whose values differ first, each group alphabetical.

    Status against the base: "same" (equal, and unchanged or no base), "cloud_changed"/"local_changed" (only
    that side moved), "both_changed" (both moved to the same value), "conflict" (both moved, differently).
    With no base the base counts as empty, as in `three_way_merge`: a field on one side only is that side's
    change, and a field on both sides with different values is a "conflict" (there is no history to say who
    changed it; the policy decides).
    """
    c, lo = normalise(cloud), normalise(local)
    b = normalise(base) if base is not None else {}
    rows = [
        FieldDiff(key, c.get(key), lo.get(key), b.get(key), _field_status(c.get(key), lo.get(key), b.get(key), base))
        for key in b.keys() | c.keys() | lo.keys()
    ]
    return sorted(rows, key=lambda row: (not row.differs, row.field))


def _field_status(cloud: Any, local: Any, base: Any, base_doc: Mapping[str, Any] | None) -> FieldStatus:
    if cloud == local:
        return "both_changed" if base_doc is not None and cloud != base else "same"
    if cloud != base and local != base:
        # A child table whose rows were edited apart merges row by row: nothing for the operator to choose.
        return "merged" if base_doc is not None and _merged_table(base, cloud, local) is not None else "conflict"
    return "cloud_changed" if cloud != base else "local_changed"


def diff_child_rows(
    cloud_rows: Sequence[Mapping[str, Any]] | None, local_rows: Sequence[Mapping[str, Any]] | None
) -> list[RowDiff]:
    """Child rows compared position by position (in idx order; row names ignored), one RowDiff per position."""
    cloud_norm = _normalise_table(cloud_rows or [], frozenset())
    local_norm = _normalise_table(local_rows or [], frozenset())
    return [
        _row_diff(pos, _at(cloud_norm, pos), _at(local_norm, pos))
        for pos in range(1, max(len(cloud_norm), len(local_norm)) + 1)
    ]


def _at(rows: list[dict[str, Any]], position: int) -> dict[str, Any] | None:
    return rows[position - 1] if position <= len(rows) else None


def _row_diff(position: int, cloud: dict[str, Any] | None, local: dict[str, Any] | None) -> RowDiff:
    if cloud is None or local is None:
        present = cloud if cloud is not None else local
        status: RowStatus = "local_only" if cloud is None else "cloud_only"
        return RowDiff(position, cloud, local, sorted(present or {}), status)
    changed = sorted(key for key in cloud.keys() | local.keys() if cloud.get(key) != local.get(key))
    return RowDiff(position, cloud, local, changed, "changed" if changed else "same")


def text_line_diff(a: str, b: str, *, from_label: str = "cloud", to_label: str = "local") -> list[str]:
    """Unified diff lines (no trailing newlines) between two texts; [] when equal."""
    if a == b:
        return []
    return list(difflib.unified_diff(a.splitlines(), b.splitlines(), fromfile=from_label, tofile=to_label, lineterm=""))


# --------------------------------------------------------------------------------------------- resolution


def apply_resolution(
    base: Mapping[str, Any] | None,
    cloud: Mapping[str, Any],
    local: Mapping[str, Any],
    choices: Mapping[str, Choice],
) -> dict[str, Any]:
    """The resolved normalised document from an operator's per-field choices.

    `choices[field]` is "cloud", "local" or ("value", <edited value>); the edited value is normalised, and an
    empty one (None, "") removes the field. Fields without a choice take the merged value (one-sided or
    agreeing change). Raises ValueError naming every conflicting field left without a choice, or a bad choice.
    """
    c, lo = normalise(cloud), normalise(local)
    merged, conflicts = _merge_fields(base, c, lo)
    unresolved = [key for key in conflicts if key not in choices]
    if unresolved:
        raise ValueError(f"unresolved conflicting fields: {', '.join(unresolved)}")
    resolved = dict(merged)
    for key, choice in choices.items():
        value = _chosen_value(key, choice, c, lo)
        if value is None:
            resolved.pop(key, None)
        else:
            resolved[key] = value
    return normalise(resolved)


def _chosen_value(key: str, choice: Choice, cloud: dict[str, Any], local: dict[str, Any]) -> Any:
    if choice == "cloud":
        return cloud.get(key)
    if choice == "local":
        return local.get(key)
    if isinstance(choice, tuple) and len(choice) == 2 and choice[0] == "value":
        # Normalise through a one-field record so tables and empties follow the same rules as documents.
        return normalise({key: choice[1]}).get(key)
    raise ValueError(f"field {key!r}: choice must be 'cloud', 'local' or ('value', v), not {choice!r}")

"""Pure document logic: normalise, hash, three-way merge, diff, policy decisions, write payloads.

Everything here is a pure function over plain JSON-like dicts (stdlib only), so the engine, the console and
the tests all agree on what "the same document" means.

What "the same" means — the normal form (`normalise`):

* **System fields are not content.** `SYSTEM_FIELDS` (name, owner, creation, modified, modified_by, idx, doctype
  and the `_user_tags`/`_comments`/`_assign`/`_liked_by`/`_seen` desk columns) differ between sites for the
  same business document, so they are dropped. Keys starting with `__` (`__onload`, `__islocal`, …) are
  runtime/client state and are dropped too. `docstatus` is **kept** on the parent: draft vs submitted vs
  cancelled is real state that must sync.
* **Child rows** additionally drop `CHILD_ROW_FIELDS` (parent, parentfield, parenttype, and `docstatus`, which
  only mirrors the parent's). Row `name`s are random per site, so rows are matched by position, in `idx`
  order (given order when some row has no integer `idx`).
* **Empty is empty.** A key whose value is None, "" or [] is dropped: Frappe returns null for unset fields,
  writes "" or NULL depending on field type and path, and a table with no rows may be [] or missing — none of
  these may count as a difference. (Consequence: clearing a field is a *removed key*; `to_write_payload`
  turns removals back into explicit nulls.)
* **Numbers compare by value.** bool → 0/1 (Frappe Check fields are ints), floats are rounded to 9 decimals
  (Frappe stores decimal(…, 9), so extra digits are float noise) and integral floats become ints: 10 == 10.0.
  Non-finite floats are rejected — no Frappe field can hold them and NaN != NaN would break every comparison.
* **Strings are kept exactly** (no trimming, no case folding).

Functions that take documents (`changed_fields`, `three_way_merge`, `diff_documents`, …) re-normalise their
inputs (normalising is idempotent), so passing raw documents is safe; pass `exclude_fields` to `normalise`
first when a doctype excludes fields.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SYSTEM_FIELDS: frozenset[str] = frozenset(
    {
        "name",
        "owner",
        "creation",
        "modified",
        "modified_by",
        "idx",
        "doctype",
        "_user_tags",
        "_comments",
        "_assign",
        "_liked_by",
        "_seen",
    }
)
# Only meaningful on child rows: the link back to the parent, and docstatus (a copy of the parent's).
CHILD_ROW_FIELDS: frozenset[str] = frozenset({"parent", "parentfield", "parenttype", "docstatus"})
CHILD_SYSTEM_FIELDS: frozenset[str] = SYSTEM_FIELDS | CHILD_ROW_FIELDS

FLOAT_DECIMALS = 9  # Frappe's Float/Currency columns are decimal(21, 9)
LONG_TEXT_CHARS = 80
FRAPPE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

FieldStatus = Literal["same", "cloud_changed", "local_changed", "both_changed", "merged", "conflict"]
HunkStatus = Literal["same", "cloud_changed", "local_changed", "both_changed", "conflict"]
RowStatus = Literal["same", "changed", "cloud_only", "local_only"]
Choice = str | tuple[str, Any]  # "cloud" | "local" | ("value", <edited value>)


# --------------------------------------------------------------------------------------------- normalise


def normalise(doc: Mapping[str, Any], exclude_fields: Iterable[str] = ()) -> dict[str, Any]:
    """The comparable content of a Frappe document (see the module docstring for the rules).

    `exclude_fields` are dropped at the top level and inside every child row. The result is deterministic,
    JSON-serialisable and a fixed point: `normalise(normalise(d)) == normalise(d)`.
    """
    excluded = frozenset(exclude_fields)
    return _normalise_record(doc, SYSTEM_FIELDS | excluded, excluded)


def _normalise_record(record: Mapping[str, Any], drop: frozenset[str], excluded: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(record):
        if key in drop or key.startswith("__"):
            continue
        value = record[key]
        kind = type(value)  # the common cases first (exact types: subclasses such as bool take the long way)
        if kind is str:
            if value:
                out[key] = value
            continue
        if value is None:
            continue
        if kind is int:
            out[key] = value
            continue
        value = _normalise_table(value, excluded) if is_child_table(value) else _normalise_value(value)
        if not _is_empty(value):
            out[key] = value
    return out


def _normalise_table(rows: Sequence[Mapping[str, Any]], excluded: frozenset[str]) -> list[dict[str, Any]]:
    drop = CHILD_SYSTEM_FIELDS | excluded
    return [_normalise_record(row, drop, excluded) for row in _rows_in_idx_order(rows)]


def _rows_in_idx_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # idx is Frappe's 1-based row order; if any row lacks a usable one, trust the order we were given.
    idxs = [row.get("idx") for row in rows]
    if all(isinstance(i, int) and not isinstance(i, bool) for i in idxs):
        return [row for _, row in sorted(zip(idxs, rows, strict=True), key=lambda pair: pair[0])]
    return list(rows)


def _normalise_value(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float | Decimal):
        return _normalise_number(value)
    if isinstance(value, datetime | date | time):
        return str(value)  # what Frappe's JSON encoder (default=str) would have sent
    if isinstance(value, Mapping):
        # Free-form JSON values, not documents: canonicalise numbers, keep every key.
        return {str(k): _normalise_value(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_normalise_value(v) for v in value]
    raise TypeError(f"cannot normalise a value of type {type(value).__name__}: {value!r}")


def _normalise_number(value: int | float | Decimal) -> int | float:
    if isinstance(value, int):
        return value
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"non-finite number {value!r} cannot be synced")
    number = round(number, FLOAT_DECIMALS)
    return int(number) if number.is_integer() else number


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def is_child_table(value: Any) -> bool:
    """A child table is a non-empty list whose items are all dicts (Frappe's shape for Table fields)."""
    return isinstance(value, list) and bool(value) and all(isinstance(row, Mapping) for row in value)


def is_long_text(value: Any) -> bool:
    """Text the diff viewer should show line by line rather than as one value."""
    return isinstance(value, str) and ("\n" in value or len(value) > LONG_TEXT_CHARS)


# --------------------------------------------------------------------------------------------- hash / changes


# json.dumps with these options, built once (dumps builds an encoder on every call with non-default options).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_hash(normalised: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of an already-normalised document."""
    return hash_of_json(canonical_json(normalised))


def canonical_json(normalised: Mapping[str, Any]) -> str:
    """The canonical JSON text of an already-normalised document (what `content_hash` hashes)."""
    return _CANONICAL_JSON.encode(normalised)


def hash_of_json(text: str) -> str:
    """`content_hash` of the document whose `canonical_json` is `text`."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def changed_fields(base: Mapping[str, Any] | None, current: Mapping[str, Any]) -> set[str]:
    """Top-level fields whose normalised value differs from base; a child table counts as one field.

    A field removed (or emptied) counts as changed. With no base, every field of `current` is new.
    """
    new = normalise(current)
    if base is None:
        return set(new)
    old = normalise(base)
    return {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}


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


# --------------------------------------------------------------------------------------------- timestamps


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def parse_frappe_timestamp(value: str, tz: str) -> datetime:
    """An aware datetime from Frappe's naive "YYYY-MM-DD HH:MM:SS[.ffffff]", read in the site's zone `tz`.

    Ambiguous local times (DST fall-back) resolve to the first occurrence (fold=0), as zoneinfo does.
    """
    for fmt in (FRAPPE_TIMESTAMP_FORMAT, "%Y-%m-%d %H:%M:%S"):
        try:
            naive = datetime.strptime(value, fmt)
        except (ValueError, TypeError):
            continue
        return naive.replace(tzinfo=_zone(tz))
    raise ValueError(f"not a Frappe timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]): {value!r}")


def format_frappe_timestamp(dt: datetime, tz: str) -> str:
    """An aware datetime as the naive "YYYY-MM-DD HH:MM:SS.ffffff" a site in zone `tz` stores."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("format_frappe_timestamp needs an aware datetime")
    return dt.astimezone(_zone(tz)).strftime(FRAPPE_TIMESTAMP_FORMAT)


def likeness(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """The share of fields (of either document) holding equal values: 1.0 for equal documents, 0.0 for none."""
    keys = a.keys() | b.keys()
    if not keys:
        return 1.0
    return sum(1 for key in keys if a.get(key) == b.get(key)) / len(keys)


# --------------------------------------------------------------------------------------------- policy


def decide(policy: str, *, sides: tuple[str, str], modified: Mapping[str, datetime]) -> str | None:
    """Which site wins a conflict under `policy`; None for "manual" (an operator decides).

    * `latest_timestamp`: the site with the later `modified` (aware datetimes — parse each site's naive
      timestamp with its own zone first). A tie goes to `sides[0]`, the first site of `sync.between`, so the
      outcome is deterministic and the same on every run.
    * `<site>_wins`: that site, which must be one of `sides`.
    """
    if policy == "manual":
        return None
    if policy == "latest_timestamp":
        return _latest(sides, modified)
    winner = policy.removesuffix("_wins")
    if policy.endswith("_wins") and winner in sides:
        return winner
    raise ValueError(f"unknown conflict policy {policy!r} for sites {sides[0]!r}/{sides[1]!r}")


def _latest(sides: tuple[str, str], modified: Mapping[str, datetime]) -> str:
    first, second = sides
    missing = [s for s in sides if s not in modified]
    if missing:
        raise ValueError(f"latest_timestamp needs a modified time for {', '.join(missing)}")
    if any(modified[s].tzinfo is None or modified[s].utcoffset() is None for s in sides):
        # Naive times from two zones cannot be compared; refusing beats silently picking the wrong side.
        raise ValueError("latest_timestamp needs aware datetimes (use parse_frappe_timestamp with the site's zone)")
    return second if modified[second] > modified[first] else first


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


# --------------------------------------------------------------------------------------------- write payload


def to_write_payload(
    normalised_target_update: Mapping[str, Any],
    target_current: Mapping[str, Any] | None = None,
    *,
    expected_modified: str | None = None,
) -> dict[str, Any]:
    """A body for a Frappe PUT/POST from a normalised document.

    No system fields; child rows carry no `name`, so a PUT replaces the whole table (rows without a name are
    inserted, existing rows not sent are deleted). Because the normal form drops empties, a field present in
    `target_current` but absent from the update is sent as an explicit null ([] for a table) — a PUT only
    touches the keys it sends. `expected_modified` (the target's `modified` as read) is sent as `modified` so
    Frappe rejects the write with TimestampMismatchError if the target moved meanwhile. `docstatus` is data
    and is sent when present (changing it on a PUT submits/cancels). Add `name` yourself for a named insert.
    """
    payload: dict[str, Any] = normalise(normalised_target_update)
    for key, value in normalise(target_current or {}).items():
        if key not in payload:
            payload[key] = [] if is_child_table(value) else None
    if expected_modified is not None:
        payload["modified"] = expected_modified
    return payload

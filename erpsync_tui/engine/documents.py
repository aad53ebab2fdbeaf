"""Pure document logic: normalise, hash, timestamps, policy decisions, write payloads (three-way merge, the row
merge of child tables, the diff viewer's comparisons and operator resolution are in `document_merge`).

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

Functions that take documents (`changed_fields`, and `document_merge`'s `three_way_merge`, `diff_documents`, …)
re-normalise their inputs (normalising is idempotent), so passing raw documents is safe; pass `exclude_fields`
to `normalise` first when a doctype excludes fields.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
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

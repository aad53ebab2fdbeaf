"""List queries: Frappe's filter forms and operators, `fields`, `order_by`, evaluated over in-memory docs."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import errors

Doc = dict[str, Any]
Predicate = Callable[[Doc], bool]

OPERATORS = frozenset(
    {"=", "!=", ">", "<", ">=", "<=", "like", "not like", "in", "not in", "is", "between", "not between"}
)
_IDENT_RE = re.compile(r"^(?:`?tab[^`.]+`?\.)?`?([A-Za-z0-9_ ]+?)`?$")


def clean_fieldname(raw: str) -> str:
    """Strip Frappe's optional `tabDocType`.`field` qualification and backticks."""
    match = _IDENT_RE.match(raw.strip())
    return match.group(1) if match else raw.strip()


@functools.lru_cache(maxsize=512)
def _like_regex(pattern: str) -> re.Pattern[str]:
    # SQL LIKE: % any run, _ one char; MariaDB's default collation is case-insensitive.
    parts = [".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern]
    return re.compile("^" + "".join(parts) + "$", re.IGNORECASE | re.DOTALL)


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple, set)):
        return list(value)
    return [value]


def _coerce(value: Any, like: Any) -> Any:
    """Cast a filter value to the type of the stored value, as the SQL comparison would."""
    if isinstance(value, str) and isinstance(like, (int, float)) and not isinstance(like, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(value, (int, float)) and isinstance(like, str):
        return str(value)
    return value


def _compare(op: str, left: Any, right: Any) -> bool:
    try:
        if op == "=":
            return left == right
        if op == "!=":
            return left != right
        if op == ">":
            return left > right
        if op == "<":
            return left < right
        if op == ">=":
            return left >= right
        return left <= right
    except TypeError:
        return False


def _end_of_day(value: Any) -> Any:
    # Frappe widens a date-only upper bound of `between` to the end of that day.
    if isinstance(value, str) and len(value) == 10:
        return value + " 23:59:59.999999"
    return value


def make_condition(fieldname: str, op: str, value: Any) -> Callable[[Any], bool]:
    """A test on one stored value. NULL is treated as '' (Frappe wraps most columns in ifnull)."""
    op = op.strip().lower()
    if op not in OPERATORS:
        raise errors.DataError(f"Operator must be one of {', '.join(sorted(OPERATORS))}")
    if op == "is":
        want_set = str(value).strip().lower() == "set"
        return lambda v: (v is not None and v != "") == want_set
    if op in ("like", "not like"):
        regex = _like_regex(str(value))
        negate = op == "not like"
        return lambda v: (regex.match("" if v is None else str(v)) is not None) != negate
    if op in ("in", "not in"):
        options = _as_list(value)
        negate = op == "not in"
        # What each option becomes when compared with a stored string (see _coerce), as a set: an indexed IN,
        # not a scan of the options for every row.
        as_text = {str(o) if isinstance(o, int | float) else o for o in options if isinstance(o, str | int | float)}

        def member(v: Any) -> bool:
            v = "" if v is None else v
            if isinstance(v, str):
                return (v in as_text) != negate
            return any(_coerce(o, v) == v for o in options) != negate

        return member
    if op in ("between", "not between"):
        bounds = _as_list(value)
        if len(bounds) != 2:
            raise errors.DataError(f"Between filter on {fieldname} needs two values")
        low, high = bounds[0], _end_of_day(bounds[1])
        negate = op == "not between"

        def between(v: Any) -> bool:
            v = "" if v is None else v
            return (_compare(">=", v, _coerce(low, v)) and _compare("<=", v, _coerce(high, v))) != negate

        return between
    return lambda v: _compare(op, "" if v is None else v, _coerce(value, "" if v is None else v))


def _normalise_item(item: Any, doctype: str) -> tuple[str | None, str, str, Any]:
    """One filter in any accepted shape → (table doctype or None, field, operator, value)."""
    if isinstance(item, (list, tuple)):
        if len(item) == 4:
            return str(item[0]), str(item[1]), str(item[2]), item[3]
        if len(item) == 3:
            return None, str(item[0]), str(item[1]), item[2]
        if len(item) == 2:
            return None, str(item[0]), "=", item[1]
    raise errors.DataError(f"Invalid filter: {item!r}")


def filter_items(filters: Any, doctype: str) -> list[tuple[str | None, str, str, Any]]:
    """Both filter forms: list of lists (optionally doctype-first) and dict (equality or [op, value])."""
    if not filters:
        return []
    if isinstance(filters, dict):
        items = []
        for key, value in filters.items():
            is_operator_form = isinstance(value, (list, tuple)) and value and isinstance(value[0], str)
            if is_operator_form and value[0].lower() in OPERATORS:
                items.append((None, key, value[0], value[1] if len(value) > 1 else None))
            else:
                items.append((None, key, "=", value))
        return items
    if isinstance(filters, (list, tuple)):
        if filters and isinstance(filters[0], str):  # a single bare filter ["field", "op", "value"]
            return [_normalise_item(filters, doctype)]
        return [_normalise_item(item, doctype) for item in filters]
    raise errors.DataError(f"Invalid filters: {filters!r}")


def compile_filters(
    filters: Any,
    doctype: str,
    known_fields: Callable[[str], set[str]],
    child_tables: dict[str, str],
    *,
    any_of: bool = False,
) -> Predicate | None:
    """Compile filters into one predicate over parent docs; unknown fields raise DataError (417)."""
    tests: list[Predicate] = []
    for table, raw_field, op, value in filter_items(filters, doctype):
        fieldname = clean_fieldname(raw_field)
        if table is None or table == doctype:
            if fieldname not in known_fields(doctype):
                raise errors.DataError(f"Field not permitted in query: {fieldname}")
            cond = make_condition(fieldname, op, value)
            tests.append(lambda d, f=fieldname, c=cond: c(d.get(f)))
        elif table in child_tables:  # filter on a child table: the parent matches if any row does
            if fieldname not in known_fields(table):
                raise errors.DataError(f"Field not permitted in query: {fieldname}")
            cond = make_condition(fieldname, op, value)
            parentfield = child_tables[table]
            tests.append(
                lambda d, f=fieldname, c=cond, p=parentfield: any(c(row.get(f)) for row in d.get(p) or ())
            )
        else:
            raise errors.DataError(f"Invalid filter doctype: {table}")
    if not tests:
        return None
    if len(tests) == 1:
        return tests[0]
    if any_of:
        return lambda d: any(t(d) for t in tests)
    return lambda d: all(t(d) for t in tests)


def parse_order_by(order_by: str | None, default: str = "modified desc") -> tuple[tuple[str, bool], ...]:
    """'modified asc, name asc' → ((field, descending), ...)."""
    spec = (order_by or default).strip() or default
    keys = []
    for part in spec.split(","):
        tokens = part.strip().rsplit(None, 1)
        if not tokens:
            continue
        descending = False
        if len(tokens) == 2 and tokens[1].lower() in ("asc", "desc"):
            descending = tokens[1].lower() == "desc"
            name = tokens[0]
        else:
            name = part.strip()
        keys.append((clean_fieldname(name), descending))
    return tuple(keys)


def _sort_value(value: Any) -> tuple[int, Any]:
    # SQL sorts NULL first ascending; keep mixed types comparable by type rank.
    if value is None:
        return (0, "")
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def sort_docs(docs: Iterable[Doc], keys: Sequence[tuple[str, bool]]) -> list[Doc]:
    result = list(docs)
    # Stable multi-key sort: apply keys from last to first.
    for fieldname, descending in reversed(keys):
        result.sort(key=lambda d, f=fieldname: _sort_value(d.get(f)), reverse=descending)
    return result


def parse_fields(fields: Any, all_columns: Sequence[str], known: set[str]) -> list[tuple[str, str]]:
    """`fields` → [(source field, output key)]; absent → only name; '*' → every parent column."""
    if not fields:
        return [("name", "name")]
    if isinstance(fields, str):
        fields = [fields]
    out: list[tuple[str, str]] = []
    for raw in fields:
        raw = str(raw).strip()
        if raw == "*" or raw.endswith(".*"):
            out.extend((c, c) for c in all_columns)
            continue
        source, alias = raw, None
        match = re.match(r"^(.*?)\s+as\s+(.+)$", raw, re.IGNORECASE)
        if match:
            source, alias = match.group(1), match.group(2).strip().strip("`\"'")
        fieldname = clean_fieldname(source)
        if fieldname not in known:
            # Current Frappe rejects unknown columns in `fields` before running SQL (a DataError, 417).
            raise errors.DataError(f"Field not permitted in query: {fieldname}")
        out.append((fieldname, alias or fieldname))
    return out


def project(doc: Doc, columns: Sequence[tuple[str, str]]) -> Doc:
    return {alias: doc.get(source) for source, alias in columns}

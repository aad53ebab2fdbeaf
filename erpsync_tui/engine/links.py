"""Link fields: values that are document names, so they must be translated between sites.

Two sites name the same customer differently (CUST-00003 here, CUST-00512 there), so a Sales Order's
`customer` cannot be copied verbatim. Documents are compared in a canonical form in which every link
holds the name used on the pair's first site; writes translate back into the target's names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# ERPNext's standard link fields for the doctypes the product ships examples for; config overrides add more.
DEFAULT_LINKS: dict[str, dict[str, str]] = {
    # `amended_from` (every submittable doctype): the cancelled original, named differently on each site (§5b).
    "Sales Order": {"customer": "Customer", "items.item_code": "Item", "amended_from": "Sales Order"},
    "Purchase Order": {"supplier": "Supplier", "items.item_code": "Item", "amended_from": "Purchase Order"},
    "Sales Invoice": {"customer": "Customer", "items.item_code": "Item", "amended_from": "Sales Invoice"},
    "Delivery Note": {"customer": "Customer", "items.item_code": "Item", "amended_from": "Delivery Note"},
    "Quotation": {"items.item_code": "Item", "amended_from": "Quotation"},
    "Attendance": {"amended_from": "Attendance"},
    "Address": {},
    "Contact": {},
}

# name on the source site → name on the target site, or None when the linked document is not mapped yet.
NameMap = Callable[[str, str], str | None]  # (link_doctype, name) → translated name


def link_fields(doctype: str, configured: Mapping[str, str] | None) -> dict[str, str]:
    return dict(configured) if configured is not None else dict(DEFAULT_LINKS.get(doctype, {}))


def linked_names(doc: Mapping[str, Any], fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """Every (link_doctype, name) the document points at."""
    found: list[tuple[str, str]] = []
    for path, target in fields.items():
        for value in _values_at(doc, path):
            if isinstance(value, str) and value:
                found.append((target, value))
    return list(dict.fromkeys(found))


def translate(doc: Mapping[str, Any], fields: Mapping[str, str], name_map: NameMap) -> tuple[dict[str, Any], list]:
    """A copy of `doc` with link values translated; also the (doctype, name) links that had no mapping."""
    out = {k: ([dict(r) for r in v] if _is_table(v) else v) for k, v in doc.items()}
    missing: list[tuple[str, str]] = []
    for path, target in fields.items():
        head, _, tail = path.partition(".")
        holders = out.get(head) if tail else [out]
        key = tail or head
        if not isinstance(holders, list):
            continue
        for holder in holders:
            value = holder.get(key) if isinstance(holder, dict) else None
            if not isinstance(value, str) or not value:
                continue
            mapped = name_map(target, value)
            if mapped is None:
                missing.append((target, value))
            else:
                holder[key] = mapped
    return out, list(dict.fromkeys(missing))


def _values_at(doc: Mapping[str, Any], path: str) -> list[Any]:
    head, _, tail = path.partition(".")
    if not tail:
        return [doc.get(head)]
    rows = doc.get(head)
    return [row.get(tail) for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []


def _is_table(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(r, dict) for r in value)

"""Duplicate checks the reliability harnesses share: what "created twice" means for traffic's documents."""

from __future__ import annotations

import collections
from typing import Any


def order_generations(orders: list[dict[str, Any]]) -> collections.Counter[tuple[str, int]]:
    """(terms, how many amendments deep) of each traffic order on one site: an order and its amendment share the
    terms, two documents with the same pair are one order created twice."""
    by_name = {str(d["name"]): d for d in orders}

    def depth(doc: dict[str, Any]) -> int:
        steps, seen = 0, set()
        while doc.get("amended_from") and doc["amended_from"] in by_name and doc["name"] not in seen:
            seen.add(doc["name"])
            doc, steps = by_name[doc["amended_from"]], steps + 1
        return steps

    return collections.Counter((str(d.get("terms")), depth(d)) for d in orders
                               if str(d.get("terms") or "").startswith("Traffic Order"))

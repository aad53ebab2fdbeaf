"""Deterministic demo data: customers, items and sales orders, inserted in bulk."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .site import SimSite

FIRST = ("Anna", "Ben", "Carla", "David", "Eva", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Klara", "Lukas",
         "Mia", "Noah", "Olga", "Paul", "Rosa", "Sven", "Tara", "Uwe")
LAST = ("Meyer", "Schmidt", "Fischer", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Richter", "Klein",
        "Wolf", "Neumann", "Schwarz", "Zimmermann", "Braun", "Krüger")
COMPANY = ("Industries", "Trading", "GmbH", "& Sons", "Logistics", "Foods", "Systems", "Consulting")
NON_LATIN = ("株式会社 日本語", "Ελληνικά Εμπόριο", "شركة العربية", "ООО Ромашка", "서울 상사")
GROUPS = ("Commercial", "Individual", "Government", "Non Profit")
TERRITORIES = ("Germany", "France", "Japan", "Greece", "Egypt", "United States")
ITEM_GROUPS = ("Products", "Raw Material", "Services", "Sub Assemblies")
WORDS = ("Bolt", "Gear", "Valve", "Pump", "Cable", "Panel", "Sensor", "Filter", "Bracket", "Motor")
TIE_GROUP = 4  # seeded docs share `modified` in groups, like a bulk import: exercises name tie-breaks in paging


def _customer(rng: random.Random) -> dict[str, object]:
    roll = rng.random()
    if roll < 0.03:
        name, kind = rng.choice(NON_LATIN), "Company"
    elif roll < 0.5:
        name, kind = f"{rng.choice(LAST)} {rng.choice(COMPANY)}", "Company"
    else:
        name, kind = f"{rng.choice(FIRST)} {rng.choice(LAST)}", "Individual"
    handle = "".join(ch for ch in name.lower() if ch.isascii() and ch.isalnum())[:12] or "info"
    return {
        "customer_name": name,
        "customer_type": kind,
        "customer_group": rng.choice(GROUPS),
        "territory": rng.choice(TERRITORIES),
        "email_id": f"{handle}{rng.randint(1, 999)}@example.com",
        "mobile_no": f"+49 170 {rng.randint(1000000, 9999999)}",
    }


def _item(rng: random.Random, number: int) -> dict[str, object]:
    word = rng.choice(WORDS)
    return {
        "item_code": f"SKU-{number:05d}",
        "item_name": f"{word} {rng.randint(1, 99)}",
        "item_group": rng.choice(ITEM_GROUPS),
        "stock_uom": rng.choice(("Nos", "Kg", "Box")),
        "standard_rate": round(rng.uniform(1, 500), 2),
        "description": f"{word} for general use",
    }


def _sales_order(rng: random.Random, customers: list[str], items: list[str]) -> dict[str, object]:
    start = date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))
    return {
        "customer": rng.choice(customers),
        "transaction_date": start.isoformat(),
        "delivery_date": (start + timedelta(days=rng.randint(3, 30))).isoformat(),
        "items": [
            {"item_code": rng.choice(items), "qty": rng.randint(1, 20), "rate": round(rng.uniform(1, 500), 2)}
            for _ in range(rng.randint(1, 4))
        ],
    }


def seed_site(site: SimSite, n: int, *, seed: int, rng_label: str) -> None:
    """Insert without webhooks (seeding is setup, not traffic), in one lock hold and one SQLite transaction."""
    if n <= 0:
        return
    rng = random.Random(f"seed:{seed}:{rng_label}")
    store = site.store
    with store.bulk():
        first_item = len(store._docs["Item"]) + 1
        stamp = ""
        written = 0

        def insert(doctype: str, body: dict[str, object]) -> str:
            nonlocal stamp, written
            if written % TIE_GROUP == 0:
                stamp = store.clock.now()
            written += 1
            return str(store.insert(doctype, body, "Administrator", timestamp=stamp)["name"])

        customers = [insert("Customer", _customer(rng)) for _ in range(n)]
        items = [insert("Item", _item(rng, first_item + i)) for i in range(n)]
        for _ in range(max(1, n // 5)):
            insert("Sales Order", _sales_order(rng, customers, items))

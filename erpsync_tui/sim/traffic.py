"""Traffic generator: inserts and edits on all sites as another user, with real conflicts and hostile strings."""

from __future__ import annotations

import collections
import random
import threading
import time
from typing import TYPE_CHECKING, Any

from . import errors

if TYPE_CHECKING:
    from .site import SimSite

TRAFFIC_USER = "traffic@{site}.example"
SEED_USER = "Administrator"  # who seeded documents (and the Python API's default user)
HOSTILE_STRINGS = (
    "[bold red]x[/]",
    "[link=http://evil.example]click[/link]",
    "\x1b[31mred alert\x1b[0m",
    "\x1b]8;;http://x\x1b\\hyperlink\x1b]8;;\x1b\\",
    "\x1b[2J\x1b[Hcleared",
    "日本語の顧客",
    "Ελληνικά",
    "العربية",
    "O'Brien & \"Sons\" <b>bold</b>",
    "tab\tand\nnewline",
    "emoji 🚀 ok",
)
# Item codes become document names: keep them URL-hostile (slash, space, quotes, non-Latin) but free of < >.
HOSTILE_ITEM_CODES = ("A/B 'quoted' #1", "日本語/部品", "Ελληνικά & more", "العربية 100%", "[bold]sku[/]")
CUSTOMER_FIELDS = ("customer_name", "customer_group", "territory", "mobile_no", "customer_details")
ITEM_FIELDS = ("item_name", "description", "standard_rate")


class TrafficGenerator:
    def __init__(
        self,
        sites: list[SimSite],
        rate_per_s: float,
        *,
        conflict_share: float = 0.2,
        hostile_share: float = 0.1,
        lifecycle_share: float = 0.1,
        seed: int = 0,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.sites = sites
        self.rate = rate_per_s
        self.conflict_share = conflict_share
        self.hostile_share = hostile_share
        self.lifecycle_share = lifecycle_share
        self.rng = random.Random(f"traffic:{seed}")
        self.stats: collections.Counter[str] = collections.Counter()
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self.conflicts: collections.deque[tuple[str, str]] = collections.deque(maxlen=5000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._serial = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="erpsync-sim-traffic", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.step()
            except errors.FrappeError as exc:  # e.g. a doc deleted meanwhile: count it, keep going
                self.stats["errors"] += 1
                self.log.append({"op": "error", "error": f"{exc.exc_type}: {exc.message}"})
            next_at += interval
            delay = next_at - time.monotonic()
            if delay < -1.0:
                next_at = time.monotonic()  # fell far behind: do not burst to catch up
            elif delay > 0:
                self._stop.wait(delay)

    # ------------------------------------------------------------------ one operation

    def step(self) -> None:
        rng = self.rng
        self.stats["ops"] += 1
        if len(self.sites) >= 2 and rng.random() < self.conflict_share and self._conflict():
            return
        site = rng.choice(self.sites)
        if rng.random() < self.lifecycle_share and self._lifecycle(site):
            return
        roll = rng.random()
        if roll < 0.2 or not site.store.names("Customer"):
            self._insert_customer(site)
        elif roll < 0.27:
            self._insert_item(site)
        else:
            doctype = "Customer" if roll < 0.8 or not site.store.names("Item") else "Item"
            name = rng.choice(site.store.names(doctype))
            self._edit(site, doctype, name, self._changes(doctype))

    def _conflict(self) -> bool:
        """Edit one document that exists under the same name on two sites, on both sides."""
        a, b = self.rng.sample(self.sites, 2)
        for doctype in ("Customer", "Item"):
            common = sorted(set(a.store.names(doctype)) & set(b.store.names(doctype)))
            if common:
                break
        else:
            return False
        name = self.rng.choice(common)
        if self.rng.random() < 0.5:  # same field, different values: a true conflict
            field = self.rng.choice(CUSTOMER_FIELDS if doctype == "Customer" else ITEM_FIELDS)
            changes_a = {field: self._value(doctype, field)}
            changes_b = {field: self._value(doctype, field)}
        else:  # different fields on each side: mergeable
            changes_a, changes_b = self._changes(doctype), self._changes(doctype)
        self._edit(a, doctype, name, changes_a, conflict=True)
        self._edit(b, doctype, name, changes_b, conflict=True)
        self.stats["conflicts"] += 1
        self.conflicts.append((doctype, name))
        return True

    def _user(self, site: SimSite) -> str:
        return TRAFFIC_USER.format(site=site.name)

    def _edit(self, site: SimSite, doctype: str, name: str, changes: dict[str, Any], conflict: bool = False) -> None:
        site.update(doctype, name, changes, user=self._user(site))
        self.stats["updates"] += 1
        self.log.append({"site": site.name, "op": "update", "doctype": doctype, "name": name,
                         "changes": changes, "conflict": conflict})

    def _insert_customer(self, site: SimSite) -> None:
        self._serial += 1
        body = {"customer_name": self._text(f"Traffic Customer {self._serial}"),
                "customer_type": self.rng.choice(("Company", "Individual")),
                "customer_group": "Commercial", "territory": "Germany"}
        doc = site.insert("Customer", body, user=self._user(site))
        self.stats["inserts"] += 1
        self.log.append({"site": site.name, "op": "insert", "doctype": "Customer", "name": doc["name"],
                         "changes": body})

    def _insert_item(self, site: SimSite) -> None:
        self._serial += 1
        code = f"TRF-{site.name}-{self._serial:05d}"
        if self.rng.random() < self.hostile_share:
            code = f"{self.rng.choice(HOSTILE_ITEM_CODES)} {self._serial}"
            self.stats["hostile"] += 1
        body = {"item_code": code, "item_name": self._text(f"Traffic Item {self._serial}"),
                "item_group": "Products", "stock_uom": "Nos", "standard_rate": round(self.rng.uniform(1, 99), 2)}
        doc = site.insert("Item", body, user=self._user(site))
        self.stats["inserts"] += 1
        self.log.append({"site": site.name, "op": "insert", "doctype": "Item", "name": doc["name"], "changes": body})

    # ------------------------------------------------------------------ document lifecycle

    def _lifecycle(self, site: SimSite) -> bool:
        """One of: a new draft Sales Order, submit, cancel, amend, rename a Customer, or a delete whose webhook
        is lost (Frappe gave up after three tries). False when the site has nothing to do it on."""
        ops = (self._new_order, self._submit, self._cancel, self._amend, self._rename, self._lost_delete)
        weights = (3, 3, 2, 2, 1, 1)
        return self.rng.choices(ops, weights)[0](site)

    def _orders(self, site: SimSite, docstatus: int) -> list[dict[str, Any]]:
        """This site's own orders (made by traffic here): each order's lifecycle moves on one site only, as when
        one team works a document; the other site follows through the sync."""
        user = self._user(site)
        return [d for d in site.store.all("Sales Order") if d.get("docstatus") == docstatus and d.get("owner") == user]

    def _new_order(self, site: SimSite) -> bool:
        # Orders link only customers made outside traffic and the sync (seeded ones), so that a customer traffic
        # made — and its copy on another site — is never linked and can always be deleted.
        customers = [d["name"] for d in site.store.all("Customer") if d.get("owner") == SEED_USER]
        items = site.store.names("Item")
        if not customers or not items:
            return False
        self._serial += 1
        # `terms` (allow on submit, never edited by traffic) marks the order: a soak can tell a copy made twice.
        body = {"customer": self.rng.choice(customers), "transaction_date": "2026-03-01",
                "delivery_date": "2026-03-20", "terms": f"Traffic Order {self._serial}",
                "items": [{"item_code": self.rng.choice(items), "qty": self.rng.randint(1, 9),
                           "rate": round(self.rng.uniform(1, 99), 2)}]}
        doc = site.insert("Sales Order", body, user=self._user(site))
        self._note(site, "order", "Sales Order", doc["name"])
        return True

    def _submit(self, site: SimSite) -> bool:
        drafts = self._orders(site, 0)
        if not drafts:
            return False
        name = self.rng.choice(drafts)["name"]
        site.submit("Sales Order", name, user=self._user(site))
        self._note(site, "submit", "Sales Order", name)
        return True

    def _cancel(self, site: SimSite) -> bool:
        submitted = self._orders(site, 1)
        if not submitted:
            return False
        name = self.rng.choice(submitted)["name"]
        site.cancel("Sales Order", name, user=self._user(site))
        self._note(site, "cancel", "Sales Order", name)
        return True

    def _amend(self, site: SimSite) -> bool:
        amended = {d.get("amended_from") for d in site.store.all("Sales Order")}
        cancelled = [d for d in self._orders(site, 2) if d["name"] not in amended]
        if not cancelled:
            return False
        name = self.rng.choice(cancelled)["name"]
        doc = site.amend("Sales Order", name, {"delivery_date": "2026-04-30"}, user=self._user(site))
        self._note(site, "amend", "Sales Order", doc["name"])
        return True

    def _rename(self, site: SimSite) -> bool:
        names = site.store.names("Customer")
        if not names:
            return False
        self._serial += 1
        old, new = self.rng.choice(names), f"CUST-R{self._serial:05d}-{site.name}"
        site.rename("Customer", old, new, user=self._user(site))
        self._note(site, "rename", "Customer", new, old_name=old)
        return True

    def _lost_delete(self, site: SimSite) -> bool:
        names = [d["name"] for d in site.store.all("Customer") if d.get("owner") == self._user(site)]
        if not names:
            return False
        name = self.rng.choice(names)
        site.delete("Customer", name, fire_webhooks=False, user=self._user(site))  # LinkExistsError if linked
        self._note(site, "lost_delete", "Customer", name)
        return True

    def _note(self, site: SimSite, op: str, doctype: str, name: str, **extra: Any) -> None:
        self.stats[op] += 1
        self.log.append({"site": site.name, "op": op, "doctype": doctype, "name": name, **extra})

    # ------------------------------------------------------------------ values

    def _changes(self, doctype: str) -> dict[str, Any]:
        fields = CUSTOMER_FIELDS if doctype == "Customer" else ITEM_FIELDS
        field = self.rng.choice(fields)
        return {field: self._value(doctype, field)}

    def _value(self, doctype: str, field: str) -> Any:
        if field == "standard_rate":
            return round(self.rng.uniform(1, 999), 2)
        self._serial += 1
        return self._text(f"{field} v{self._serial}")

    def _text(self, plain: str) -> str:
        if self.rng.random() < self.hostile_share:
            self.stats["hostile"] += 1
            return f"{plain} {self.rng.choice(HOSTILE_STRINGS)}"
        return plain

"""Row-level three-way merge of child tables, by the engine against two simulator sites."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from erpsync_tui.engine.sync import Outcome
from erpsync_tui.sim import SimCluster
from erpsync_tui.store.models import Conflict

from .test_sync import counterpart, customer

ITEM_CODES = ("ROW-A", "ROW-B", "ROW-C")
# The site recomputes a Sales Order's totals from its rows on every save (ERPNext does too): edits to different
# rows move them on both sites, so they are left to each site rather than compared.
TOTALS = {"overrides": {"Sales Order": {"exclude_fields": ["total_qty", "grand_total"]}}}


async def synced_order(engine, cluster: SimCluster, rows: int) -> tuple[str, str]:
    """A Sales Order of `rows` item rows created on cloud and synced to local; (cloud name, local name)."""
    buyer = cluster["cloud"].insert("Customer", customer("Row Buyer"), fire_webhooks=False)
    for code in ITEM_CODES:
        cluster["cloud"].insert("Item", {"item_code": code, "item_group": "Products", "stock_uom": "Nos"},
                                fire_webhooks=False)
    items = [{"item_code": ITEM_CODES[i % 3], "qty": i + 1, "rate": 10} for i in range(rows)]
    order = cluster["cloud"].insert("Sales Order", {
        "customer": buyer["name"], "transaction_date": "2026-11-01", "delivery_date": "2026-11-10", "items": items,
    }, fire_webhooks=False)
    assert (await engine.sync_document("Sales Order", "cloud", order["name"])).outcome == Outcome.CREATED
    return order["name"], counterpart(engine, "Sales Order", "cloud", order["name"])


def edit_rows(cluster: SimCluster, site: str, name: str, edits: dict[int, dict[str, Any]]) -> None:
    """Edit some rows (0-based positions) of a Sales Order on one site, keeping every other row as it is."""
    doc = cluster[site].get("Sales Order", name)
    assert doc is not None
    items = [{k: v for k, v in row.items() if k not in ("name", "parent", "parenttype", "parentfield")}
             for row in sorted(doc["items"], key=lambda r: r["idx"])]
    for position, change in edits.items():
        items[position].update(change)
    cluster[site].update("Sales Order", name, {"items": items}, fire_webhooks=False)


def rows_of(cluster: SimCluster, site: str, name: str) -> list[tuple[str, float, float]]:
    doc = cluster[site].get("Sales Order", name)
    assert doc is not None
    return [(r["item_code"], r["qty"], r["rate"]) for r in sorted(doc["items"], key=lambda r: r["idx"])]


async def test_disjoint_child_row_edits_merge_without_a_conflict(cluster: SimCluster, make_engine, db) -> None:
    engine = make_engine(conflict_resolution="manual", field_level_merge=True, **TOTALS)
    cloud_name, local_name = await synced_order(engine, cluster, rows=40)
    edit_rows(cluster, "cloud", cloud_name, {i: {"qty": 1000 + i} for i in range(0, 30, 2)})  # 15 rows
    edit_rows(cluster, "local", local_name, {i: {"rate": 99} for i in range(1, 30, 2)})  # 15 other rows
    result = await engine.sync_document("Sales Order", "local", local_name)
    assert result.outcome == Outcome.MERGED
    expected = [(ITEM_CODES[i % 3], 1000 + i if i < 30 and i % 2 == 0 else i + 1,
                 99 if i < 30 and i % 2 == 1 else 10) for i in range(40)]
    assert rows_of(cluster, "cloud", cloud_name) == expected
    assert rows_of(cluster, "local", local_name) == expected
    with db.read() as s:
        assert s.exec(select(Conflict)).all() == []
    assert (await engine.sync_document("Sales Order", "cloud", cloud_name)).outcome == Outcome.SKIPPED


async def test_the_same_child_row_edited_on_both_sides_opens_a_conflict(cluster: SimCluster, make_engine,
                                                                         db) -> None:
    engine = make_engine(conflict_resolution="manual", field_level_merge=True, **TOTALS)
    cloud_name, local_name = await synced_order(engine, cluster, rows=6)
    before = rows_of(cluster, "local", local_name)
    edit_rows(cluster, "cloud", cloud_name, {0: {"qty": 500}, 3: {"qty": 7}})
    edit_rows(cluster, "local", local_name, {3: {"qty": 8}})  # row 4 changed differently on each site
    result = await engine.sync_document("Sales Order", "local", local_name)
    assert result.outcome == Outcome.CONFLICT
    with db.read() as s:
        assert s.exec(select(Conflict)).one().fields == ["items"]
    assert rows_of(cluster, "local", local_name)[0] == before[0]  # nothing written while the conflict is open


async def test_row_edits_merge_by_default_with_the_totals_left_to_each_site(cluster: SimCluster, make_engine,
                                                                           db) -> None:
    """No exclude_fields configured: a row's amount and the order's totals are server-computed (config.py), so
    qty edits to different rows on each site merge, and no write carries a total."""
    engine = make_engine(conflict_resolution="manual", field_level_merge=True)
    cloud_name, local_name = await synced_order(engine, cluster, rows=6)
    sent: list[dict[str, Any]] = []
    for connector in engine.connectors.values():
        real_update = connector.update

        async def recording(doctype, name, changes, *, modified=None, _real=real_update):
            sent.append(dict(changes))
            return await _real(doctype, name, changes, modified=modified)

        connector.update = recording  # records what is sent, then sends it to the site as usual
    edit_rows(cluster, "cloud", cloud_name, {0: {"qty": 50}})
    edit_rows(cluster, "local", local_name, {4: {"qty": 70}})
    result = await engine.sync_document("Sales Order", "local", local_name)
    assert result.outcome == Outcome.MERGED
    expected = [(ITEM_CODES[i % 3], {0: 50, 4: 70}.get(i, i + 1), 10) for i in range(6)]
    assert rows_of(cluster, "cloud", cloud_name) == rows_of(cluster, "local", local_name) == expected
    with db.read() as s:
        assert s.exec(select(Conflict)).all() == []
    assert sent, "the merge wrote to the sites"
    for body in sent:
        assert not {"grand_total", "total_qty"} & body.keys()
        assert all("amount" not in row for row in body.get("items", []))
    for site, name in (("cloud", cloud_name), ("local", local_name)):
        order = cluster[site].get("Sales Order", name)
        assert order["grand_total"] == 10 * sum(q for _, q, _ in expected)  # each site computed its own
    assert (await engine.sync_document("Sales Order", "cloud", cloud_name)).outcome == Outcome.SKIPPED

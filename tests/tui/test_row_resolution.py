"""A 1,000-row Sales Order conflict resolved row by row from the console, against a real engine and two sites."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlmodel import select

from erpsync_tui.engine.sync import Outcome, SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.store.models import Conflict

from .test_engine_flows import cluster as cluster  # the fixture
from .test_engine_flows import connectors, console, customer, engine_config, start_engine
from .testing import screen_text, wait_for, wait_loaded

ROWS = 1000
CODES = ("SO-A", "SO-B", "SO-C")
# Sites recompute a row's amount and the order's totals on every save (ERPNext does too): left to each site.
TOTALS = {"overrides": {"Sales Order": {"exclude_fields": ["amount", "total_qty", "grand_total"]}}}
CLOUD_ONLY = list(range(0, 20, 2))  # 10 rows only cloud edits
LOCAL_ONLY = list(range(1, 20, 2))  # 10 rows only local edits
BOTH_QTY = [100, 200, 300, 400]  # qty changed differently on each site: row conflicts
SPLIT = 500  # cloud changes qty, local changes rate: a row conflict resolved field by field


def edit(cluster: SimCluster, site: str, name: str, edits: dict[int, dict[str, Any]]) -> None:
    doc = cluster[site].get("Sales Order", name)
    items = [{k: v for k, v in row.items() if k not in ("name", "parent", "parenttype", "parentfield")}
             for row in sorted(doc["items"], key=lambda r: r["idx"])]
    for position, change in edits.items():
        items[position].update(change)
    cluster[site].update("Sales Order", name, {"items": items}, fire_webhooks=False)


def rows_of(cluster: SimCluster, site: str, name: str) -> list[tuple[float, float]]:
    doc = cluster[site].get("Sales Order", name)
    return [(r["qty"], r["rate"]) for r in sorted(doc["items"], key=lambda r: r["idx"])]


async def open_row_conflict(cluster: SimCluster, db, config) -> tuple[str, str]:
    engine = SyncEngine(config, db, connectors(cluster, config))
    buyer = cluster["cloud"].insert("Customer", customer("Thousand Rows"), fire_webhooks=False)
    for code in CODES:
        cluster["cloud"].insert("Item", {"item_code": code, "item_group": "Products", "stock_uom": "Nos"},
                                fire_webhooks=False)
    items = [{"item_code": CODES[i % 3], "qty": i + 1, "rate": 10} for i in range(ROWS)]
    order = cluster["cloud"].insert("Sales Order", {"customer": buyer["name"], "transaction_date": "2026-11-01",
                                                    "delivery_date": "2026-11-10", "items": items},
                                    fire_webhooks=False)
    assert (await engine.sync_document("Sales Order", "cloud", order["name"])).outcome == Outcome.CREATED
    local_name = engine.state.translate_name("Sales Order", "cloud", order["name"], "local")
    cloud_edits = {i: {"qty": 5000 + i} for i in CLOUD_ONLY + BOTH_QTY + [SPLIT]}
    local_edits = {i: {"qty": 7000 + i} for i in LOCAL_ONLY + BOTH_QTY} | {SPLIT: {"rate": 12}}
    assert len(cloud_edits) == len(local_edits) == 15
    edit(cluster, "cloud", order["name"], cloud_edits)
    edit(cluster, "local", local_name, local_edits)
    assert (await engine.sync_document("Sales Order", "local", local_name)).outcome == Outcome.CONFLICT
    for connector in engine.connectors.values():
        await connector.aclose()
    return order["name"], local_name


def conflict_status(db) -> str:
    with db.read() as s:
        return s.exec(select(Conflict)).one().status


def expected_rows() -> list[tuple[float, float]]:
    rows = [(float(i + 1), 10.0) for i in range(ROWS)]
    for i in CLOUD_ONLY:
        rows[i] = (5000.0 + i, 10.0)
    for i in LOCAL_ONLY:
        rows[i] = (7000.0 + i, 10.0)
    for i, side in zip(BOTH_QTY, ("cloud", "local", "cloud", "local"), strict=True):
        rows[i] = ((5000.0 if side == "cloud" else 7000.0) + i, 10.0)
    rows[SPLIT] = (5000.0 + SPLIT, 12.0)  # qty from cloud, rate from local
    return rows


async def test_a_thousand_row_conflict_resolved_row_by_row(cluster: SimCluster, db) -> None:
    config = engine_config(cluster, conflict_resolution="manual", field_level_merge=True, **TOTALS)
    cloud_name, local_name = await open_row_conflict(cluster, db, config)
    thread = await asyncio.to_thread(start_engine, cluster, db, config)
    try:
        app = await console(db, config, thread)
        async with app.run_test(size=(160, 48)) as pilot:
            await wait_loaded(pilot)
            await pilot.press("c")
            await wait_for(pilot, lambda: app.screen.diffs != {})
            screen = app.screen
            view = screen.query_one("#diff")
            # Only what differs is drawn: the table line, 25 row lines (5 conflicting first), cells, a count.
            conflicting = [k for k in view.lines if k.startswith("h|items|")][:5]
            positions = [screen.model.hunks["items"][view.lines[k].hunk].cloud_position for k in conflicting]
            assert positions == [i + 1 for i in (*BOTH_QTY, SPLIT)]
            assert sum(k.startswith("h|items|") for k in view.lines) == 25
            assert view.row_count < 60
            # The table is drawn a frame after the model is set: wait for it (a loaded machine is slow to paint).
            await wait_for(pilot, lambda: all(part in screen_text(app) for part in ("the same: 975", "≠ BOTH",
                                                                                      "row 101")))
            # Row by row: the cursor moves on to the next row that needs a choice after each pick.
            await pilot.press("down", "down", "c", "l", "c", "l")  # past row 100, drawn as row 101's neighbour
            assert view.current_line().kind == "hunk" and view.current_line().hunk == view.lines[conflicting[4]].hunk
            await pilot.press("down", "c", "l")  # row 501, field by field: qty from cloud, rate from local
            await wait_for(pilot, lambda: "all chosen" in screen_text(app))
            await pilot.press("a")
            await wait_for(pilot, lambda: "Apply resolution" in screen_text(app))
            assert "rows chosen one by one" in screen_text(app)
            await pilot.press("y")
            await wait_for(pilot, lambda: conflict_status(db) == "resolved", limit=60)  # written, then closed
        assert rows_of(cluster, "local", local_name) == expected_rows()
        assert rows_of(cluster, "cloud", cloud_name) == expected_rows()
    finally:
        await asyncio.to_thread(thread.stop)


"""End to end: a simulated Frappe site posts a real signed webhook and the event lands in the queue."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database

from .conftest import SECRET, StartReceiver, queue_rows


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=1, webhook_retry_delays=(0.05, 0.1)) as sim:
        yield sim


async def _poll(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await asyncio.to_thread(condition) and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)


async def test_simulator_webhook_lands_in_the_queue(
    cluster: SimCluster, start_receiver: StartReceiver, db: Database
) -> None:
    rx = await start_receiver()
    site = cluster["cloud"]
    site.add_webhook(rx.handle.url + "/webhook/cloud", SECRET)
    doc = site.insert("Customer", {"customer_name": "Webhook Co", "customer_type": "Company",
                                   "customer_group": "Commercial"})
    await _poll(lambda: len(queue_rows(db)) >= 1)
    [row] = queue_rows(db)
    assert (row.site, row.doctype, row.name) == ("cloud", "Customer", doc["name"])
    assert row.payload["event"] == "after_insert"
    assert row.payload["modified"] == str(doc["modified"])
    assert site.webhook_log[-1]["status"] == 200


async def test_simulator_with_the_wrong_secret_is_refused(
    cluster: SimCluster, start_receiver: StartReceiver, db: Database
) -> None:
    rx = await start_receiver()
    site = cluster["cloud"]
    site.add_webhook(rx.handle.url + "/webhook/cloud", "not-the-secret")
    site.insert("Customer", {"customer_name": "Forged Co", "customer_type": "Company",
                             "customer_group": "Commercial"})
    await _poll(lambda: len(site.webhook_log) >= 3)  # Frappe tries three times, then gives up
    assert [entry["status"] for entry in site.webhook_log] == [401, 401, 401]
    assert queue_rows(db) == []


async def test_submit_cancel_and_update_after_submit_events_land_in_the_queue(
    cluster: SimCluster, start_receiver: StartReceiver, db: Database
) -> None:
    rx = await start_receiver()
    site = cluster["cloud"]
    cust = site.insert("Customer", {"customer_name": "Lifecycle Co"}, fire_webhooks=False)
    site.insert("Item", {"item_code": "LC-1", "item_group": "Products", "stock_uom": "Nos"}, fire_webhooks=False)
    order = site.insert("Sales Order", {"customer": cust["name"], "transaction_date": "2026-01-01",
                                        "delivery_date": "2026-01-09", "items": [{"item_code": "LC-1", "qty": 1}]},
                        fire_webhooks=False)
    site.add_webhook(rx.handle.url + "/webhook/cloud", SECRET)
    seen: list[str] = []
    for step in (lambda: site.submit("Sales Order", order["name"]),
                 lambda: site.update("Sales Order", order["name"], {"terms": "net 30"}),
                 lambda: site.cancel("Sales Order", order["name"])):
        step()
        await _poll(lambda: len(queue_rows(db)) >= 1 and queue_rows(db)[-1].payload["event"] not in seen)
        seen.append(queue_rows(db)[-1].payload["event"])
    # Pending events of one document coalesce into one item; each was accepted (200) and stored in turn.
    assert seen == ["on_submit", "on_update_after_submit", "on_cancel"]
    assert [entry["status"] for entry in site.webhook_log] == [200, 200, 200]

"""Documents: naming collisions, timestamps, PUT and child-table semantics, deletes, persistence."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sim_helpers import api_client, customer, item

from erpsync_tui.sim import FrappeError, SimCluster, SimSite

TS = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6}$")


def test_naming_series_collide_across_sites(cluster: SimCluster) -> None:
    docs = {}
    for name, site in cluster.sites.items():
        with api_client(site) as client:
            docs[name] = client.post("/api/resource/Customer", json=customer(f"Only on {name}")).json()["data"]
    assert docs["cloud"]["name"] == docs["local"]["name"] == "CUST-00001"
    assert docs["cloud"]["customer_name"] != docs["local"]["customer_name"]
    assert cluster["local"].insert("Supplier", {"supplier_name": "S"})["name"] == "SUPP-00001"
    order_site = cluster["local"]
    order_site.insert("Item", item("SKU-1"))
    order = order_site.insert("Sales Order", {
        "customer": "CUST-00001", "transaction_date": "2026-01-01", "delivery_date": "2026-01-05",
        "items": [{"item_code": "SKU-1", "qty": 1}],
    })
    assert re.fullmatch(r"SAL-ORD-\d{4}-00001", order["name"])


def test_explicit_name_and_failed_inserts_do_not_use_numbers(site: SimSite) -> None:
    assert site.insert("Customer", customer("X", name="Custom Name"))["name"] == "Custom Name"
    with pytest.raises(FrappeError):
        site.insert("Customer", {"customer_type": "Company"})
    assert site.insert("Customer", customer("Y"))["name"] == "CUST-00001"


def test_timestamps_naive_in_site_zone_and_strictly_increasing() -> None:
    with SimCluster(["tokyo", "utc"], timezones=["Asia/Tokyo", "UTC"]) as cluster:
        tokyo = cluster["tokyo"].insert("Customer", customer("T"))
        utc = cluster["utc"].insert("Customer", customer("U"))
        for doc in (tokyo, utc):
            assert TS.match(doc["modified"]) and doc["creation"] == doc["modified"]
        local_now = datetime.now(ZoneInfo("Asia/Tokyo")).replace(tzinfo=None)
        assert abs(datetime.fromisoformat(tokyo["modified"]) - local_now) < timedelta(minutes=1)
        assert abs(datetime.fromisoformat(tokyo["modified"]) - datetime.fromisoformat(utc["modified"])) > timedelta(
            hours=8)
        site = cluster["utc"]
        seen = [utc["modified"]]
        for i in range(200):
            seen.append(site.update("Customer", utc["name"], {"territory": str(i)})["modified"])
        assert all(a < b for a, b in itertools.pairwise(seen))


def test_put_changes_only_sent_keys(site: SimSite, client: httpx.Client) -> None:
    doc = site.insert("Customer", customer("Keep", territory="Japan", mobile_no="1"))
    updated = client.put(f"/api/resource/Customer/{doc['name']}", json={"mobile_no": "2", "name": "IGNORED",
                                                                       "creation": "1999-01-01 00:00:00.000000"})
    data = updated.json()["data"]
    assert data["mobile_no"] == "2" and data["territory"] == "Japan" and data["name"] == doc["name"]
    assert data["creation"] == doc["creation"] and data["modified"] > doc["modified"]
    assert data["modified_by"] == site.user and data["owner"] == "Administrator"


def test_child_table_put_semantics(site: SimSite, client: httpx.Client) -> None:
    site.insert("Customer", customer("C"))
    for code in ("A", "B", "C", "D"):
        site.insert("Item", item(code))
    order = client.post("/api/resource/Sales Order", json={
        "customer": "CUST-00001", "transaction_date": "2026-01-01", "delivery_date": "2026-01-09",
        "items": [{"item_code": "A", "qty": 1, "rate": 10}, {"item_code": "B", "qty": 2, "rate": 10},
                  {"item_code": "C", "qty": 3, "rate": 10}],
    }).json()["data"]
    rows = order["items"]
    assert [r["idx"] for r in rows] == [1, 2, 3]
    assert all(r["parent"] == order["name"] and r["parentfield"] == "items" and r["parenttype"] == "Sales Order"
               and r["doctype"] == "Sales Order Item" and len(r["name"]) == 10 for r in rows)
    assert len({r["name"] for r in rows}) == 3 and order["grand_total"] == 60

    path = f"/api/resource/Sales Order/{order['name']}"
    # keep B (updated, moved first), drop A and C, insert D
    sent = [{"name": rows[1]["name"], "qty": 5}, {"item_code": "D", "qty": 1, "rate": 1}]
    updated = client.put(path, json={"items": sent}).json()["data"]["items"]
    assert [r["item_code"] for r in updated] == ["B", "D"]
    assert updated[0]["name"] == rows[1]["name"] and updated[0]["qty"] == 5 and updated[0]["rate"] == 10
    assert updated[1]["name"] not in {r["name"] for r in rows}
    assert [r["idx"] for r in updated] == [1, 2]
    # a PUT without the table leaves it alone
    again = client.put(path, json={"delivery_date": "2026-02-01"}).json()["data"]["items"]
    assert [(r["name"], r["item_code"]) for r in again] == [(r["name"], r["item_code"]) for r in updated]


def test_child_row_names_differ_between_sites(cluster: SimCluster) -> None:
    names = []
    for site in cluster:
        site.insert("Customer", customer("C"))
        site.insert("Item", item("A"))
        order = site.insert("Sales Order", {"customer": "CUST-00001", "transaction_date": "2026-01-01",
                                            "delivery_date": "2026-01-02", "items": [{"item_code": "A", "qty": 1}]})
        names.append(order["items"][0]["name"])
    assert names[0] != names[1]


def test_delete_records_deleted_document(site: SimSite, client: httpx.Client) -> None:
    doc = site.insert("Customer", customer("Gone"))
    assert client.delete(f"/api/resource/Customer/{doc['name']}").status_code == 202
    params = {"fields": '["name", "deleted_doctype", "deleted_name", "data", "creation"]',
              "filters": '{"deleted_doctype": "Customer"}'}
    rows = client.get("/api/resource/Deleted Document", params=params).json()["data"]
    assert len(rows) == 1 and rows[0]["deleted_name"] == doc["name"]
    assert '"customer_name": "Gone"' in rows[0]["data"]
    assert site.count("Deleted Document") == 1


def test_python_api_returns_copies(site: SimSite) -> None:
    doc = site.insert("Customer", customer("Copy"))
    doc["customer_name"] = "mutated"
    fetched = site.get("Customer", doc["name"])
    assert fetched is not None and fetched["customer_name"] == "Copy"
    assert site.get("Customer", "nope") is None
    assert [d["name"] for d in site.all("Customer")] == [doc["name"]]


def test_sqlite_persistence_survives_restart(tmp_path: Path) -> None:
    with SimCluster(["p"], persist_dir=tmp_path) as cluster:
        site = cluster["p"]
        site.seed(50)
        first = site.insert("Customer", customer("Persisted"))
        site.update("Customer", first["name"], {"territory": "Japan"})
        site.delete("Customer", site.insert("Customer", customer("Doomed"))["name"])
        before = {d["name"]: d for d in site.all("Customer")}
        orders_before = site.all("Sales Order")
    cluster.close()
    with SimCluster(["p"], persist_dir=tmp_path) as again:
        site = again["p"]
        assert {d["name"]: d for d in site.all("Customer")} == before
        assert site.all("Sales Order") == orders_before
        assert site.count("Deleted Document") == 1
        fresh = site.insert("Customer", customer("After restart"))
        assert fresh["name"] == "CUST-00053"  # the series counter survived
        assert fresh["modified"] > max(d["modified"] for d in before.values())
        with api_client(site) as client:
            assert client.get(f"/api/resource/Customer/{first['name']}").json()["data"]["territory"] == "Japan"
    again.close()


def test_restart_on_same_port(site: SimSite, cluster: SimCluster) -> None:
    url = site.url
    cluster.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/method/ping")
    cluster.start()
    assert site.url == url and httpx.get(f"{url}/api/method/ping").json() == {"message": "pong"}

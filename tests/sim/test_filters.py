"""Both filter forms, every operator, or_filters, child-table filters and order_by, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sim_helpers import api_client, customer

from erpsync_tui.sim import SimCluster, SimSite

ROWS = [
    ("Alpha GmbH", "Company", "Commercial", "Germany", "+49 1"),
    ("Beta Ltd", "Company", "Government", "France", ""),
    ("Gamma Person", "Individual", "Commercial", "Japan", None),
    ("Delta 日本語", "Individual", "Non Profit", "Japan", "+81 2"),
    ("alpha lower", "Individual", "Commercial", "Greece", "+30 3"),
]


@pytest.fixture(scope="module")
def listing() -> Iterator[tuple[SimSite, httpx.Client]]:
    with SimCluster(["f"]) as cluster:
        site = cluster["f"]
        for name, kind, group, territory, mobile in ROWS:
            site.insert("Customer", customer(name, customer_type=kind, customer_group=group, territory=territory,
                                             mobile_no=mobile))
        with api_client(site) as client:
            yield site, client


def names(client: httpx.Client, **params: Any) -> list[str]:
    query = {key: json.dumps(value) if not isinstance(value, str) else value for key, value in params.items()}
    query.setdefault("fields", '["customer_name"]')
    query.setdefault("order_by", "name asc")
    response = client.get("/api/resource/Customer", params=query)
    assert response.status_code == 200, response.text
    return [row["customer_name"] for row in response.json()["data"]]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([["customer_group", "=", "Commercial"]], ["Alpha GmbH", "Gamma Person", "alpha lower"]),
        ([["Customer", "customer_group", "=", "Commercial"]], ["Alpha GmbH", "Gamma Person", "alpha lower"]),
        ({"customer_group": "Commercial"}, ["Alpha GmbH", "Gamma Person", "alpha lower"]),
        ({"territory": ["!=", "Japan"]}, ["Alpha GmbH", "Beta Ltd", "alpha lower"]),
        ([["name", ">", "CUST-00003"]], ["Delta 日本語", "alpha lower"]),
        ([["name", "<", "CUST-00002"]], ["Alpha GmbH"]),
        ([["name", ">=", "CUST-00004"]], ["Delta 日本語", "alpha lower"]),
        ([["name", "<=", "CUST-00002"]], ["Alpha GmbH", "Beta Ltd"]),
        ([["customer_name", "like", "alpha%"]], ["Alpha GmbH", "alpha lower"]),  # LIKE is case-insensitive
        ([["customer_name", "like", "%日本%"]], ["Delta 日本語"]),
        ([["customer_name", "not like", "%a%"]], []),
        ([["territory", "in", ["Japan", "Greece"]]], ["Gamma Person", "Delta 日本語", "alpha lower"]),
        ([["territory", "in", "Japan, Greece"]], ["Gamma Person", "Delta 日本語", "alpha lower"]),
        ([["territory", "not in", ["Japan", "Greece"]]], ["Alpha GmbH", "Beta Ltd"]),
        ([["mobile_no", "is", "set"]], ["Alpha GmbH", "Delta 日本語", "alpha lower"]),
        ([["mobile_no", "is", "not set"]], ["Beta Ltd", "Gamma Person"]),
        ([["name", "between", ["CUST-00002", "CUST-00003"]]], ["Beta Ltd", "Gamma Person"]),
        ({"customer_type": "Individual", "territory": "Japan"}, ["Gamma Person", "Delta 日本語"]),
        ([["customer_type", "=", "Individual"], ["territory", "=", "Japan"]], ["Gamma Person", "Delta 日本語"]),
    ],
)
def test_filter_forms_and_operators(listing: tuple[SimSite, httpx.Client], filters: Any, expected: list[str]) -> None:
    _, client = listing
    assert names(client, filters=filters) == expected


def test_or_filters_and_combined(listing: tuple[SimSite, httpx.Client]) -> None:
    _, client = listing
    or_filters = [["territory", "=", "France"], ["territory", "=", "Greece"]]
    assert names(client, or_filters=or_filters) == ["Beta Ltd", "alpha lower"]
    assert names(client, or_filters={"territory": "France", "customer_group": "Non Profit"}) == [
        "Beta Ltd", "Delta 日本語"]
    assert names(client, filters={"customer_type": "Individual"}, or_filters=or_filters) == ["alpha lower"]


def test_timestamp_filter_on_modified(listing: tuple[SimSite, httpx.Client]) -> None:
    site, client = listing
    third = site.get("Customer", "CUST-00003")
    assert third is not None
    assert names(client, filters=[["modified", ">", third["modified"]]]) == ["Delta 日本語", "alpha lower"]
    assert names(client, filters={"modified": [">=", third["modified"]]}) == ["Gamma Person", "Delta 日本語",
                                                                              "alpha lower"]


def test_order_by(listing: tuple[SimSite, httpx.Client]) -> None:
    _, client = listing
    assert names(client, order_by="name desc")[0] == "alpha lower"
    assert names(client, order_by="territory asc, name desc") == [
        "Beta Ltd", "Alpha GmbH", "alpha lower", "Delta 日本語", "Gamma Person"]
    assert names(client, order_by="`tabCustomer`.`modified` asc") == [row[0] for row in ROWS]
    default = client.get("/api/resource/Customer", params={"fields": '["name"]'}).json()["data"]
    assert next(row["name"] for row in default) == "CUST-00005"  # default: modified desc


def test_child_table_filter(cluster: SimCluster) -> None:
    site = cluster["cloud"]
    site.seed(20)
    order = site.all("Sales Order")[0]
    code = order["items"][0]["item_code"]
    with api_client(site) as client:
        filters = json.dumps([["Sales Order Item", "item_code", "=", code]])
        rows = client.get("/api/resource/Sales Order", params={"filters": filters, "limit": 0}).json()["data"]
    expected = sorted(o["name"] for o in site.all("Sales Order") if any(r["item_code"] == code for r in o["items"]))
    assert sorted(r["name"] for r in rows) == expected and order["name"] in expected

"""Endpoints over real loopback HTTP: envelopes, auth forms, v1 mount, CRUD, methods."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import httpx
from sim_helpers import assert_frappe_error, customer, item

from erpsync_tui.sim import SimSite


def test_ping_and_logged_user_with_token_and_basic(site: SimSite, client: httpx.Client) -> None:
    assert httpx.get(f"{site.url}/api/method/ping").json() == {"message": "pong"}  # Guest may ping
    assert client.get("/api/method/frappe.auth.get_logged_user").json() == {"message": site.user}
    basic = base64.b64encode(f"{site.api_key}:{site.api_secret}".encode()).decode()
    url = f"{site.url}/api/method/frappe.auth.get_logged_user"
    response = httpx.get(url, headers={"Authorization": f"Basic {basic}"})
    assert response.json() == {"message": site.user}


def test_v1_prefix_serves_the_same_api(client: httpx.Client) -> None:
    created = client.post("/api/v1/resource/Customer", json=customer("V1 Corp")).json()["data"]
    assert client.get(f"/api/v1/resource/Customer/{created['name']}").json()["data"]["customer_name"] == "V1 Corp"
    assert client.get("/api/v1/method/ping").json() == {"message": "pong"}


def test_crud_round_trip(site: SimSite, client: httpx.Client) -> None:
    response = client.post("/api/resource/Customer", json=customer("Acme", doctype="Customer"))
    assert response.status_code == 200
    doc = response.json()["data"]
    assert doc["name"] == "CUST-00001"
    for key in ("name", "owner", "creation", "modified", "modified_by", "docstatus", "idx", "doctype"):
        assert key in doc
    assert doc["owner"] == doc["modified_by"] == site.user
    assert doc["docstatus"] == 0 and doc["doctype"] == "Customer"

    got = client.get("/api/resource/Customer/CUST-00001").json()["data"]
    assert got == doc

    updated = client.put("/api/resource/Customer/CUST-00001", json={"territory": "Japan"}).json()["data"]
    assert updated["territory"] == "Japan" and updated["customer_name"] == "Acme"

    deleted = client.delete("/api/resource/Customer/CUST-00001")
    assert deleted.status_code == 202 and deleted.json() == {"data": "ok"}
    assert_frappe_error(client.get("/api/resource/Customer/CUST-00001"), 404, "DoesNotExistError")


def test_form_encoded_data_field(client: httpx.Client) -> None:
    response = client.post("/api/resource/Customer", data={"data": json.dumps(customer("Form Corp"))})
    assert response.status_code == 200
    name = response.json()["data"]["name"]
    response = client.put(f"/api/resource/Customer/{name}", data={"data": json.dumps({"territory": "Egypt"})})
    assert response.json()["data"]["territory"] == "Egypt"


def test_names_with_slash_space_quotes_and_non_latin(client: httpx.Client) -> None:
    for code in ("A/B 'quoted' \"x\" #1 & 50%", "日本語/部品 Ελληνικά", "العربية"):
        created = client.post("/api/resource/Item", json=item(code)).json()["data"]
        assert created["name"] == code
        got = client.get(f"/api/resource/Item/{quote(code, safe='')}")
        assert got.status_code == 200 and got.json()["data"]["item_code"] == code
        assert client.put(f"/api/resource/Item/{quote(code, safe='')}", json={"description": "d"}).status_code == 200
        assert client.delete(f"/api/resource/Item/{quote(code, safe='')}").status_code == 202


def test_list_defaults_to_names_only_and_star_gives_columns(site: SimSite, client: httpx.Client) -> None:
    site.seed(30)
    rows = client.get("/api/resource/Customer").json()["data"]
    assert len(rows) == 20 and all(set(row) == {"name"} for row in rows)
    rows = client.get("/api/resource/Customer", params={"fields": '["*"]', "limit": 5}).json()["data"]
    assert len(rows) == 5 and {"customer_name", "modified", "docstatus"} <= set(rows[0])
    rows = client.get("/api/resource/Sales Order", params={"fields": '["*"]', "limit": 1}).json()["data"]
    assert "items" not in rows[0]  # child tables are not part of list results
    rows = client.get("/api/resource/Customer", params={"fields": '["name as id", "customer_name"]', "limit": 1})
    assert set(rows.json()["data"][0]) == {"id", "customer_name"}
    assert len(client.get("/api/resource/Customer", params={"limit_page_length": 0}).json()["data"]) == 30


def test_get_count_and_other_methods(site: SimSite, client: httpx.Client) -> None:
    site.seed(10)
    assert client.get("/api/method/frappe.client.get_count", params={"doctype": "Customer"}).json() == {"message": 10}
    filters = json.dumps([["customer_type", "=", "Company"]])
    count = client.get("/api/method/frappe.client.get_count", params={"doctype": "Customer", "filters": filters})
    assert count.json()["message"] == site.count("Customer", [["customer_type", "=", "Company"]])
    posted = client.post("/api/method/frappe.client.get_count", json={"doctype": "Item"}).json()
    assert posted == {"message": 10}
    names = client.post(
        "/api/method/frappe.client.insert_many",
        json={"docs": json.dumps([{"doctype": "Customer", **customer(f"Many {i}")} for i in range(3)])},
    ).json()["message"]
    assert names == ["CUST-00011", "CUST-00012", "CUST-00013"]
    value = client.get(
        "/api/method/frappe.client.get_value",
        params={"doctype": "Customer", "fieldname": "customer_name", "filters": "CUST-00012"},
    ).json()
    assert value == {"message": {"customer_name": "Many 1"}}
    listed = client.get("/api/method/frappe.client.get_list", params={"doctype": "Customer", "limit_page_length": 3})
    assert len(listed.json()["message"]) == 3


def test_unknown_routes_and_doctypes_are_404(client: httpx.Client) -> None:
    assert_frappe_error(client.get("/api/nothing/here"), 404, "DoesNotExistError")
    assert_frappe_error(client.get("/api/method/frappe.no.such.method"), 404, "DoesNotExistError")
    assert_frappe_error(client.get("/api/resource/No Such Doctype"), 404, "DoesNotExistError")
    # an ad-hoc doctype comes into existence on its first insert, without validation
    created = client.post("/api/resource/No Such Doctype", json={"title": "x"}).json()["data"]
    assert len(created["name"]) == 10
    rows = client.get("/api/resource/No Such Doctype", params={"fields": '["title"]'}).json()["data"]
    assert rows == [{"title": "x"}]


def test_counters_by_endpoint_and_status(site: SimSite, client: httpx.Client) -> None:
    site.reset_counters()
    client.get("/api/resource/Customer")
    client.get("/api/resource/Customer/NOPE")
    client.get("/api/method/ping")
    assert site.counters == {
        "GET /api/resource/{doctype} 200": 1,
        "GET /api/resource/{doctype}/{name} 404": 1,
        "GET /api/method/ping 200": 1,
    }
    stats = httpx.get(f"{site.url}/_sim/stats").json()
    assert stats["counters"]["GET /api/method/ping 200"] == 1


def test_insert_many_is_all_or_nothing(site: SimSite, client: httpx.Client) -> None:
    """Frappe runs the call in one request transaction: one bad document and none is inserted."""
    docs = [{"doctype": "Customer", **customer("Kept?")}, {"doctype": "Customer", "customer_type": "Company"}]
    response = client.post("/api/method/frappe.client.insert_many", json={"docs": json.dumps(docs)})
    assert_frappe_error(response, 417, "MandatoryError")
    assert site.count("Customer") == 0
    good = [{"doctype": "Customer", **customer(f"Many {i}")} for i in range(2)]
    names = client.post("/api/method/frappe.client.insert_many", json={"docs": json.dumps(good)}).json()["message"]
    assert names == ["CUST-00001", "CUST-00002"]  # the failed call used up no series number
    too_many = [{"doctype": "Customer", **customer(f"N{i}")} for i in range(201)]
    assert client.post("/api/method/frappe.client.insert_many", json={"docs": json.dumps(too_many)}).status_code == 417


def test_doctype_meta_names_the_table_fields(client: httpx.Client) -> None:
    fields = client.get("/api/resource/DocType/Sales Order").json()["data"]["fields"]
    assert {f["fieldname"] for f in fields if f["fieldtype"] == "Table"} == {"items"}
    fields = client.get("/api/resource/DocType/Customer").json()["data"]["fields"]
    assert not [f for f in fields if f["fieldtype"] == "Table"]
    assert_frappe_error(client.get("/api/resource/DocType/No Such Thing"), 404, "DoesNotExistError")

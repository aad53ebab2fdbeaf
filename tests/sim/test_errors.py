"""Each Frappe error class: status code, exc_type and the string→list→JSON-strings `_server_messages`."""

from __future__ import annotations

import httpx
from sim_helpers import assert_frappe_error, customer, item

from erpsync_tui.sim import SimSite


def _sales_order(customer_name: str, item_code: str, **extra: object) -> dict[str, object]:
    return {"customer": customer_name, "transaction_date": "2026-05-01", "delivery_date": "2026-05-10",
            "items": [{"item_code": item_code, "qty": 2, "rate": 5}], **extra}


def test_authentication_errors(site: SimSite) -> None:
    url = f"{site.url}/api/resource/Customer"
    wrong = httpx.get(url, headers={"Authorization": f"token {site.api_key}:wrong"})
    assert_frappe_error(wrong, 401, "AuthenticationError")
    unknown = httpx.get(url, headers={"Authorization": "token nobody:secret"})
    assert_frappe_error(unknown, 401, "AuthenticationError")
    malformed = httpx.get(url, headers={"Authorization": "Basic %%%not-base64%%%"})
    assert_frappe_error(malformed, 400, "InvalidAuthorizationToken")


def test_guest_gets_403_not_401(site: SimSite) -> None:
    body = assert_frappe_error(httpx.get(f"{site.url}/api/resource/Customer"), 403, "PermissionError")
    assert body["_error_message"] == "Insufficient Permission for Customer"
    assert_frappe_error(httpx.get(f"{site.url}/api/method/frappe.auth.get_logged_user"), 403, "PermissionError")


def test_denied_and_read_only_doctypes(site: SimSite, client: httpx.Client) -> None:
    site.set_permissions(denied_doctypes=["Supplier"], read_only_doctypes=["Item"])
    body = assert_frappe_error(client.get("/api/resource/Supplier"), 403, "PermissionError")
    assert body["_error_message"] == "Insufficient Permission for Supplier"
    assert client.get("/api/resource/Item").status_code == 200
    assert_frappe_error(client.post("/api/resource/Item", json=item("X")), 403, "PermissionError")
    site.add_api_key("reader", "pw", denied_doctypes=["Customer"])
    other = httpx.get(f"{site.url}/api/resource/Customer", headers={"Authorization": "token reader:pw"})
    assert_frappe_error(other, 403, "PermissionError")


def test_duplicate_explicit_name_is_409(client: httpx.Client) -> None:
    first = client.post("/api/resource/Customer", json=customer("Named", name="MY-NAME"))
    assert first.json()["data"]["name"] == "MY-NAME"
    assert_frappe_error(client.post("/api/resource/Customer", json=customer("Again", name="MY-NAME")), 409,
                        "DuplicateEntryError")
    client.post("/api/resource/Item", json=item("SKU-1"))
    assert_frappe_error(client.post("/api/resource/Item", json=item("SKU-1")), 409, "DuplicateEntryError")


def test_validation_errors_are_417(client: httpx.Client) -> None:
    assert_frappe_error(client.post("/api/resource/Customer", json={"customer_type": "Company"}), 417,
                        "MandatoryError")
    assert_frappe_error(client.post("/api/resource/Item", json={"item_code": "X"}), 417, "MandatoryError")
    bad_type = client.post("/api/resource/Customer", json=customer("T", customer_type="Partnership"))
    assert_frappe_error(bad_type, 417, "ValidationError")
    link = client.post("/api/resource/Sales Order", json=_sales_order("CUST-00042", "SKU-1"))
    body = assert_frappe_error(link, 417, "LinkValidationError")
    assert "Could not find Customer: CUST-00042" in body["_server_messages"]
    client.post("/api/resource/Customer", json=customer("Real"))
    bad_row = client.post("/api/resource/Sales Order", json=_sales_order("CUST-00001", "NO-SUCH-ITEM"))
    assert_frappe_error(bad_row, 417, "LinkValidationError")
    client.post("/api/resource/Item", json=item("SKU-1"))
    no_items = client.post("/api/resource/Sales Order", json=_sales_order("CUST-00001", "SKU-1", items=[]))
    assert_frappe_error(no_items, 417, "MandatoryError")
    zero_qty = _sales_order("CUST-00001", "SKU-1", items=[{"item_code": "SKU-1", "qty": 0}])
    assert_frappe_error(client.post("/api/resource/Sales Order", json=zero_qty), 417, "ValidationError")
    assert client.post("/api/resource/Sales Order", json=_sales_order("CUST-00001", "SKU-1")).status_code == 200
    bad_update = client.put("/api/resource/Customer/CUST-00001", json={"customer_type": "Nope"})
    assert_frappe_error(bad_update, 417, "ValidationError")


def test_unknown_filter_field_is_417_data_error(client: httpx.Client) -> None:
    response = client.get("/api/resource/Customer", params={"filters": '[["no_such_field", "=", 1]]'})
    body = assert_frappe_error(response, 417, "DataError")
    assert "no_such_field" in body["_server_messages"]
    assert_frappe_error(client.get("/api/resource/Customer", params={"fields": '["bogus"]'}), 417, "DataError")


def test_timestamp_mismatch_only_with_stale_modified(client: httpx.Client) -> None:
    doc = client.post("/api/resource/Customer", json=customer("Concurrent")).json()["data"]
    fresh = client.put("/api/resource/Customer/CUST-00001", json={"territory": "A", "modified": doc["modified"]})
    assert fresh.status_code == 200
    stale = client.put("/api/resource/Customer/CUST-00001", json={"territory": "B", "modified": doc["modified"]})
    assert_frappe_error(stale, 417, "TimestampMismatchError")
    blind = client.put("/api/resource/Customer/CUST-00001", json={"territory": "C"})  # no modified: overwrites
    assert blind.status_code == 200 and blind.json()["data"]["territory"] == "C"


def test_link_exists_blocks_delete(client: httpx.Client) -> None:
    client.post("/api/resource/Customer", json=customer("Linked"))
    client.post("/api/resource/Item", json=item("SKU-1"))
    client.post("/api/resource/Sales Order", json=_sales_order("CUST-00001", "SKU-1"))
    assert_frappe_error(client.delete("/api/resource/Customer/CUST-00001"), 417, "LinkExistsError")
    assert_frappe_error(client.delete("/api/resource/Item/SKU-1"), 417, "LinkExistsError")


def test_submitted_documents_reject_edits(client: httpx.Client) -> None:
    client.post("/api/resource/Customer", json=customer("S"))
    client.post("/api/resource/Item", json=item("SKU-1"))
    order = client.post("/api/resource/Sales Order", json=_sales_order("CUST-00001", "SKU-1")).json()["data"]
    path = f"/api/resource/Sales Order/{order['name']}"
    assert client.put(path, json={"docstatus": 1}).json()["data"]["docstatus"] == 1
    assert_frappe_error(client.put(path, json={"delivery_date": "2026-06-01"}), 417, "UpdateAfterSubmitError")
    assert_frappe_error(client.put(path, json={"docstatus": 0}), 417, "DocstatusTransitionError")
    assert_frappe_error(client.delete(path), 417, "ValidationError")


def test_tracebacks_only_when_enabled(site: SimSite, client: httpx.Client) -> None:
    body = client.get("/api/resource/Customer/NOPE").json()
    assert "exc" not in body and "exception" not in body
    site.tracebacks = True
    body = client.get("/api/resource/Customer/NOPE").json()
    assert body["exception"].startswith("frappe.exceptions.DoesNotExistError")
    assert isinstance(body["exc"], str)

"""Document lifecycle in the simulator: submit, cancel, amend (amended naming), computed status, allow on submit,
rename_doc (links follow, a Comment, no webhook, no Deleted Document), Deleted Document rows."""

from __future__ import annotations

import json
import time

import httpx
from sim_helpers import WebhookReceiver, api_client, assert_frappe_error, customer, item

from erpsync_tui.sim import SimSite


def _order(site: SimSite, customer_name: str = "CUST-00001") -> dict:
    return site.insert("Sales Order", {
        "customer": customer_name, "transaction_date": "2026-01-01", "delivery_date": "2026-01-05",
        "items": [{"item_code": "SKU-1", "qty": 2, "rate": 5}],
    })


def _setup(site: SimSite) -> None:
    site.insert("Customer", customer("Acme"))
    site.insert("Item", item("SKU-1"))


def test_submit_cancel_by_method_and_status_is_computed(site: SimSite, client: httpx.Client) -> None:
    _setup(site)
    order = _order(site)
    assert order["status"] == "Draft"
    answer = client.post("/api/method/frappe.client.submit",
                         json={"doc": {"doctype": "Sales Order", "name": order["name"], "modified": order["modified"]}})
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"]["docstatus"] == 1
    assert answer.json()["message"]["status"] == "To Deliver and Bill"
    # A client's status is ignored: the server computes it.
    site.update("Sales Order", order["name"], {"status": "Completed", "terms": "net 30"})
    assert site.get("Sales Order", order["name"])["status"] == "To Deliver and Bill"
    answer = client.post("/api/method/frappe.client.cancel", json={"doctype": "Sales Order", "name": order["name"]})
    assert answer.status_code == 200, answer.text
    cancelled = site.get("Sales Order", order["name"])
    assert (cancelled["docstatus"], cancelled["status"]) == (2, "Cancelled")


def test_only_allow_on_submit_fields_change_after_submit(site: SimSite, client: httpx.Client) -> None:
    _setup(site)
    name = _order(site)["name"]
    site.submit("Sales Order", name)
    site.update("Sales Order", name, {"terms": "allowed on submit"})
    refused = client.put(f"/api/resource/Sales Order/{name}", json={"delivery_date": "2026-02-01"})
    assert_frappe_error(refused, 417, "UpdateAfterSubmitError")
    site.cancel("Sales Order", name)
    assert_frappe_error(client.put(f"/api/resource/Sales Order/{name}", json={"terms": "x"}), 417,
                        "DocstatusTransitionError")
    back_to_draft = client.put(f"/api/resource/Sales Order/{name}", json={"docstatus": 0})
    assert_frappe_error(back_to_draft, 417, "DocstatusTransitionError")
    meta = client.get("/api/resource/DocType/Sales Order").json()["data"]
    assert meta["is_submittable"] == 1
    assert {f["fieldname"] for f in meta["fields"] if f["allow_on_submit"]} == {"terms"}


def test_a_new_document_cannot_be_inserted_cancelled(site: SimSite, client: httpx.Client) -> None:
    _setup(site)
    body = {"customer": "CUST-00001", "transaction_date": "2026-01-01", "delivery_date": "2026-01-05",
            "docstatus": 2, "items": [{"item_code": "SKU-1", "qty": 1}]}
    assert_frappe_error(client.post("/api/resource/Sales Order", json=body), 417, "DocstatusTransitionError")
    body["docstatus"] = 1  # submitted on insert is allowed
    assert client.post("/api/resource/Sales Order", json=body).json()["data"]["docstatus"] == 1


def test_amendments_are_named_like_frappe(site: SimSite, client: httpx.Client) -> None:
    _setup(site)
    name = _order(site)["name"]
    site.submit("Sales Order", name)
    site.cancel("Sales Order", name)
    first = site.amend("Sales Order", name)
    assert (first["name"], first["amended_from"], first["docstatus"]) == (f"{name}-1", name, 0)
    site.submit("Sales Order", first["name"])
    site.cancel("Sales Order", first["name"])
    body = {k: v for k, v in first.items() if k not in ("name", "items")}
    body.update(amended_from=first["name"], docstatus=0, items=[{"item_code": "SKU-1", "qty": 1}])
    second = client.post("/api/resource/Sales Order", json=body).json()["data"]
    assert second["name"] == f"{name}-2"


def test_rename_doc_rewrites_links_leaves_a_comment_and_no_trace_for_pollers(site: SimSite) -> None:
    receiver = WebhookReceiver()
    try:
        _setup(site)
        order = _order(site)
        site.add_webhook(receiver.url, "s")
        with api_client(site) as client:
            answer = client.post("/api/method/frappe.client.rename_doc",
                                 json={"doctype": "Customer", "old_name": "CUST-00001", "new_name": "Acme Ltd"})
            assert answer.json() == {"message": "Acme Ltd"}
            assert client.get("/api/resource/Customer/CUST-00001").status_code == 404
            renamed = client.get("/api/resource/Customer/Acme Ltd").json()["data"]
        assert renamed["customer_name"] == "Acme"  # series-named: the business field stays
        assert site.get("Sales Order", order["name"])["customer"] == "Acme Ltd"
        comments = site.all("Comment")
        assert [c["content"] for c in comments] == ["renamed from CUST-00001 to Acme Ltd"]
        assert site.all("Deleted Document") == []
        time.sleep(0.3)
        assert receiver.requests == []
        # A field-named doctype: the naming field follows the new name (ERPNext's Item.after_rename).
        site.rename("Item", "SKU-1", "SKU-ONE")
        assert site.get("Item", "SKU-ONE")["item_code"] == "SKU-ONE"
        assert site.get("Sales Order", order["name"])["items"][0]["item_code"] == "SKU-ONE"
    finally:
        receiver.close()


def test_submit_and_cancel_send_their_events(site: SimSite) -> None:
    receiver = WebhookReceiver()
    try:
        _setup(site)
        name = _order(site)["name"]
        site.add_webhook(receiver.url, "s")
        site.submit("Sales Order", name)
        site.update("Sales Order", name, {"terms": "t"})
        site.cancel("Sales Order", name)
        events = sorted(json.loads(body)["event"] for _headers, body in receiver.wait_for(3))
        assert events == ["on_cancel", "on_submit", "on_update_after_submit"]  # delivered concurrently
    finally:
        receiver.close()


def test_a_delete_leaves_a_deleted_document_row(site: SimSite) -> None:
    site.insert("Customer", customer("Gone"))
    site.delete("Customer", "CUST-00001", fire_webhooks=False)
    rows = site.store.list("Deleted Document", fields=["*"],
                           filters=[["deleted_doctype", "=", "Customer"]], limit_page_length=0)
    assert [r["deleted_name"] for r in rows] == ["CUST-00001"]
    assert json.loads(rows[0]["data"])["customer_name"] == "Gone"

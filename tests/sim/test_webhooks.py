"""Outgoing webhooks: exact body and signature, async delivery, retries, Python-API firing and suppression."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import httpx
from sim_helpers import WebhookReceiver, customer

from erpsync_tui.sim import SimSite, sign_webhook

SECRET = "s3cret-ü"


def verify(headers: dict[str, str], body: bytes, secret: str) -> bool:
    """The documented algorithm: base64(HMAC-SHA256(secret UTF-8, raw body)), constant-time compare."""
    expected = base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode()
    return hmac.compare_digest(expected, headers["X-Frappe-Webhook-Signature"])


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_signed_webhooks_for_insert_update_delete(site: SimSite, client: httpx.Client,
                                                  receiver: WebhookReceiver) -> None:
    site.add_webhook(receiver.url, SECRET)
    doc = client.post("/api/resource/Customer", json=customer("Hooked")).json()["data"]
    updated = client.put(f"/api/resource/Customer/{doc['name']}", json={"territory": "Japan"}).json()["data"]
    client.delete(f"/api/resource/Customer/{doc['name']}")
    requests = receiver.wait_for(3)
    assert len(requests) == 3
    events = []
    for headers, body in requests:
        assert verify(headers, body, SECRET)
        assert headers["Content-Type"] == "application/json"
        data = json.loads(body)
        assert body == json.dumps(data, default=str).encode()  # default separators, as Frappe sends
        assert sign_webhook(body, SECRET) == headers["X-Frappe-Webhook-Signature"]
        events.append((data["event"], data["doctype"], data["name"], data["modified"]))
    assert sorted(events) == sorted([
        ("after_insert", "Customer", doc["name"], doc["modified"]),
        ("on_update", "Customer", doc["name"], updated["modified"]),
        ("on_trash", "Customer", doc["name"], updated["modified"]),
    ])


def test_delivery_is_asynchronous(site: SimSite, client: httpx.Client) -> None:
    slow = WebhookReceiver(delay_s=0.6)
    try:
        site.add_webhook(slow.url, SECRET)
        started = time.perf_counter()
        assert client.post("/api/resource/Customer", json=customer("Fast")).status_code == 200
        assert time.perf_counter() - started < 0.4
        assert len(slow.wait_for(1)) == 1
    finally:
        slow.close()


def test_retry_after_failures(site: SimSite) -> None:
    flaky = WebhookReceiver(fail_first=2)
    try:
        site.add_webhook(flaky.url, SECRET)
        site.insert("Customer", customer("Retry me"))
        headers, body = flaky.wait_for(1)[0]
        assert verify(headers, body, SECRET)
        assert flaky.statuses == [500, 500, 200]
        wait_until(lambda: len(site.webhook_log) >= 3)
        assert [(e["attempt"], e["status"]) for e in site.webhook_log] == [(1, 500), (2, 500), (3, 200)]
    finally:
        flaky.close()


def test_gives_up_after_three_attempts(site: SimSite) -> None:
    dead = WebhookReceiver(fail_first=10)
    try:
        site.add_webhook(dead.url, SECRET)
        site.insert("Customer", customer("Lost"))
        wait_until(lambda: len(site.webhook_log) >= 3)
        time.sleep(0.3)  # longer than both retry delays: no fourth attempt comes
        assert [e["attempt"] for e in site.webhook_log] == [1, 2, 3]
        assert dead.statuses == [500, 500, 500]
    finally:
        dead.close()


def test_python_api_fires_unless_suppressed(site: SimSite, receiver: WebhookReceiver) -> None:
    site.add_webhook(receiver.url, SECRET)
    site.insert("Customer", customer("Quiet"), fire_webhooks=False)
    loud = site.insert("Customer", customer("Loud"))
    site.update("Customer", loud["name"], {"territory": "X"}, fire_webhooks=False)
    requests = receiver.wait_for(1)
    time.sleep(0.2)
    assert [json.loads(body)["name"] for _, body in receiver.requests] == [loud["name"]]
    assert len(requests) == 1


def test_doctype_filter_and_clear(site: SimSite, receiver: WebhookReceiver) -> None:
    site.add_webhook(receiver.url, SECRET, doctypes=["Item"])
    site.insert("Customer", customer("Ignored"))
    site.insert("Item", {"item_code": "I-1", "item_group": "Products", "stock_uom": "Nos"})
    assert json.loads(receiver.wait_for(1)[0][1])["doctype"] == "Item"
    site.clear_webhooks()
    site.insert("Item", {"item_code": "I-2", "item_group": "Products", "stock_uom": "Nos"})
    time.sleep(0.2)
    assert len(receiver.requests) == 1


def test_webhooks_via_admin_endpoint(site: SimSite, client: httpx.Client, receiver: WebhookReceiver) -> None:
    httpx.post(f"{site.url}/_sim/webhooks", json={"url": receiver.url, "secret": SECRET})
    client.post("/api/resource/Customer", json=customer("Admin hook"))
    headers, body = receiver.wait_for(1)[0]
    assert verify(headers, body, SECRET)
    assert httpx.get(f"{site.url}/_sim/webhooks").json()["targets"][0]["url"] == receiver.url

"""Helpers shared by the simulator tests (a plain module: tests/ is not a package)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from erpsync_tui.sim import SimSite


def api_client(site: SimSite, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=site.url, headers={"Authorization": site.auth_header}, timeout=5, **kwargs)


def server_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Decode `_server_messages`: a JSON string → a list of JSON strings → objects."""
    outer = body["_server_messages"]
    assert isinstance(outer, str)
    items = json.loads(outer)
    assert isinstance(items, list) and items
    assert all(isinstance(item, str) for item in items)
    return [json.loads(item) for item in items]


def assert_frappe_error(response: httpx.Response, status: int, exc_type: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["exc_type"] == exc_type, body
    messages = server_messages(body)
    assert messages[0]["message"]
    assert messages[0]["indicator"] == "red"
    return body


def customer(customer_name: str = "Acme", **extra: Any) -> dict[str, Any]:
    return {"customer_name": customer_name, "customer_type": "Company", **extra}


def item(code: str, **extra: Any) -> dict[str, Any]:
    return {"item_code": code, "item_group": "Products", "stock_uom": "Nos", **extra}


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1:0 recording requests; answers 500 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.fail_first = fail_first
        self.delay_s = delay_s
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                with receiver._cond:
                    status = 500 if len(receiver.statuses) < receiver.fail_first else 200
                    receiver.statuses.append(status)
                    if status == 200:
                        receiver.requests.append((dict(self.headers.items()), body))
                    receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[dict[str, str], bytes]]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

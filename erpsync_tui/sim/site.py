"""SimSite: one simulated ERPNext site — store, API keys, faults, counters, webhooks, and its ASGI app."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from .app import build_app
from .auth import ApiKey, KeyRing
from .faults import Faults, KeyRateLimiter
from .seed import seed_site
from .store import Store
from .webhooks import WebhookDispatcher

PYTHON_API_USER = "Administrator"  # writes through the Python API come from "another user" than the sync key


def save_event(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """The webhook event of a save: on_submit (0→1), on_cancel (1→2), on_update_after_submit (1→1), else on_update."""
    old = int((before or {}).get("docstatus") or 0)
    new = int(after.get("docstatus") or 0)
    if (old, new) == (0, 1):
        return "on_submit"
    if (old, new) == (1, 2):
        return "on_cancel"
    if (old, new) == (1, 1):
        return "on_update_after_submit"
    return "on_update"


class SimSite:
    def __init__(
        self,
        name: str,
        *,
        seed: int = 0,
        timezone: str = "UTC",
        persist_path: str | Path | None = None,
        latency_ms: float = 0.0,
        port: int = 0,
        webhook_retry_delays: tuple[float, ...] = (1.0, 4.0),
        clock_offset_s: float = 0.0,
        tracebacks: bool = False,
    ) -> None:
        self.name = name
        self.seed_value = seed
        self.timezone = timezone
        self.port = port
        self.api_key = f"{name}-demo-key"
        self.api_secret = f"{name}-demo-secret"
        self.user = f"sync@{name}.example"
        self.tracebacks = tracebacks
        self.store = Store(name, timezone=timezone, seed=seed, persist_path=persist_path,
                           clock_offset_s=clock_offset_s)
        self.keyring = KeyRing()
        self.keyring.add(ApiKey(self.api_key, self.api_secret, self.user))
        self.rng = random.Random(f"faults:{seed}:{name}")
        self.rate_limiter = KeyRateLimiter()
        self.webhooks = WebhookDispatcher(tuple(webhook_retry_delays))
        self._base_latency_ms = latency_ms
        self._faults = Faults(latency_ms=latency_ms)
        self._faults_lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self._counter_lock = threading.Lock()
        # client (host, port) → transport, so the drop fault can close a connection without answering
        self.transports: dict[Any, asyncio.Transport] = {}
        self.closing = False
        self.app = build_app(self)

    def __repr__(self) -> str:
        return f"SimSite({self.name!r}, url={self.url!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_header(self) -> str:
        return f"token {self.api_key}:{self.api_secret}"

    # ------------------------------------------------------------------ faults

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, **changes: Any) -> Faults:
        """Change only the named fault fields; the rest stay as they are."""
        with self._faults_lock:
            self._faults = self._faults.replace(**changes)
            if "per_key_rps" in changes:
                self.rate_limiter.reset()
            return self._faults

    def clear_faults(self) -> Faults:
        """Back to no faults, keeping the base latency the site was created with."""
        with self._faults_lock:
            self._faults = Faults(latency_ms=self._base_latency_ms)
            self.rate_limiter.reset()
            return self._faults

    # ------------------------------------------------------------------ keys and permissions

    def add_api_key(
        self,
        key: str,
        secret: str,
        user: str | None = None,
        *,
        denied_doctypes: list[str] | None = None,
        read_only_doctypes: list[str] | None = None,
    ) -> None:
        self.keyring.add(ApiKey(key, secret, user or f"{key}@{self.name}.example",
                                set(denied_doctypes or ()), set(read_only_doctypes or ())))

    def set_permissions(
        self,
        *,
        denied_doctypes: list[str] | None = None,
        read_only_doctypes: list[str] | None = None,
        key: str | None = None,
    ) -> None:
        """Restrict a key (default: the demo key): denied → 403 on everything, read-only → 403 on writes."""
        self.keyring.set_permissions(key or self.api_key, denied_doctypes, read_only_doctypes)

    # ------------------------------------------------------------------ counters

    def record_request(self, method: str, template: str, status: int | str) -> None:
        key = f"{method} {template} {status}"
        with self._counter_lock:
            self._counters[key] = self._counters.get(key, 0) + 1

    @property
    def counters(self) -> dict[str, int]:
        with self._counter_lock:
            return dict(self._counters)

    def reset_counters(self) -> None:
        with self._counter_lock:
            self._counters.clear()

    def stats(self) -> dict[str, Any]:
        with self.store.lock:
            docs = {dt: len(self.store._docs[dt]) for dt in self.store._docs if self.store._docs[dt]}
        return {
            "site": self.name,
            "url": self.url,
            "counters": self.counters,
            "requests": sum(self.counters.values()),
            "faults": self.faults.as_dict(),
            "docs": docs,
            "webhook_attempts": len(self.webhooks.log),
        }

    # ------------------------------------------------------------------ writes used by the HTTP API

    def api_insert(self, doctype: str, body: dict[str, Any], user: str) -> dict[str, Any]:
        doc = self.store.insert(doctype, body, user)
        self.webhooks.emit(doctype, doc["name"], doc["modified"], "after_insert")
        return doc

    def api_insert_many(self, docs: list[dict[str, Any]], user: str) -> list[str]:
        inserted = self.store.insert_many(docs, user)
        for doc in inserted:  # webhooks fire after the commit, like Frappe's enqueue_after_commit
            self.webhooks.emit(doc["doctype"], doc["name"], doc["modified"], "after_insert")
        return [doc["name"] for doc in inserted]

    def api_update(self, doctype: str, name: str, body: dict[str, Any], user: str) -> dict[str, Any]:
        before = self.store.get(doctype, name)
        doc = self.store.update(doctype, name, body, user)
        self.webhooks.emit(doctype, doc["name"], doc["modified"], save_event(before, doc))
        return doc

    def api_rename(self, doctype: str, old_name: str, new_name: str, user: str, *, merge: bool = False) -> str:
        """frappe.client.rename_doc: no webhook (Frappe has no rename event), no Deleted Document."""
        return str(self.store.rename(doctype, old_name, new_name, user, merge=merge)["name"])

    def api_delete(self, doctype: str, name: str, user: str) -> dict[str, Any]:
        doc = self.store.delete(doctype, name, user)
        self.webhooks.emit(doctype, doc["name"], doc["modified"], "on_trash")
        return doc

    # ------------------------------------------------------------------ Python API (thread-safe, no HTTP)

    def insert(
        self, doctype: str, doc: dict[str, Any], *, fire_webhooks: bool = True, user: str = PYTHON_API_USER,
        timestamp: str | None = None,
    ) -> dict[str, Any]:
        """Insert as `user`; raises the same FrappeError subclasses the API maps to HTTP errors."""
        result = self.store.insert(doctype, doc, user, timestamp=timestamp)
        if fire_webhooks:
            self.webhooks.emit(doctype, result["name"], result["modified"], "after_insert")
        return result

    def update(
        self, doctype: str, name: str, changes: dict[str, Any], *, fire_webhooks: bool = True,
        user: str = PYTHON_API_USER,
    ) -> dict[str, Any]:
        before = self.store.get(doctype, name)
        result = self.store.update(doctype, name, changes, user)
        if fire_webhooks:
            self.webhooks.emit(doctype, result["name"], result["modified"], save_event(before, result))
        return result

    def submit(self, doctype: str, name: str, *, fire_webhooks: bool = True, user: str = PYTHON_API_USER) -> dict:
        return self.update(doctype, name, {"docstatus": 1}, fire_webhooks=fire_webhooks, user=user)

    def cancel(self, doctype: str, name: str, *, fire_webhooks: bool = True, user: str = PYTHON_API_USER) -> dict:
        return self.update(doctype, name, {"docstatus": 2}, fire_webhooks=fire_webhooks, user=user)

    def amend(self, doctype: str, name: str, changes: dict[str, Any] | None = None, *, fire_webhooks: bool = True,
              user: str = PYTHON_API_USER) -> dict[str, Any]:
        """The desk's Amend: a new draft copy of cancelled `name` with amended_from set, named <name>-1."""
        original = self.store.read(doctype, name)
        body = {k: v for k, v in original.items() if k not in ("name", "owner", "creation", "status")}
        for value in body.values():
            if isinstance(value, list):
                for row in value:
                    if isinstance(row, dict):
                        row.pop("name", None)
        body.update(changes or {}, docstatus=0, amended_from=name)
        return self.insert(doctype, body, fire_webhooks=fire_webhooks, user=user)

    def rename(self, doctype: str, old_name: str, new_name: str, *, user: str = PYTHON_API_USER) -> str:
        return self.api_rename(doctype, old_name, new_name, user)

    def delete(self, doctype: str, name: str, *, fire_webhooks: bool = True, user: str = PYTHON_API_USER) -> None:
        doc = self.store.delete(doctype, name, user)
        if fire_webhooks:
            self.webhooks.emit(doctype, doc["name"], doc["modified"], "on_trash")

    def get(self, doctype: str, name: str) -> dict[str, Any] | None:
        return self.store.get(doctype, name)

    def all(self, doctype: str) -> list[dict[str, Any]]:
        return self.store.all(doctype)

    def names(self, doctype: str) -> list[str]:
        return self.store.names(doctype)

    def count(self, doctype: str, filters: Any = None) -> int:
        return self.store.count(doctype, filters)

    def seed(self, n: int, *, seed: int | None = None) -> None:
        """n customers, n items and n//5 sales orders (at least one), deterministic for (seed, site name).

        Pass `seed` to get the same data on several sites (e.g. a shared starting point).
        """
        seed_site(self, n, seed=self.seed_value if seed is None else seed, rng_label=self.name if seed is None else "")

    def add_webhook(self, url: str, secret: str, doctypes: list[str] | None = None) -> None:
        self.webhooks.add(url, secret, doctypes)

    def clear_webhooks(self) -> None:
        self.webhooks.clear()

    @property
    def webhook_log(self) -> list[dict[str, Any]]:
        """Every delivery attempt (url, attempt, status or error, body) — the site's Webhook Request Log."""
        return list(self.webhooks.log)

    # ------------------------------------------------------------------ server plumbing

    def protocol_class(self) -> type[H11Protocol]:
        """uvicorn's h11 protocol, recording transports so the drop fault can abort a connection."""
        transports = self.transports

        class TrackingH11Protocol(H11Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
                super().connection_made(transport)  # type: ignore[arg-type]
                transports[self.client] = transport  # type: ignore[assignment]

            def connection_lost(self, exc: Exception | None) -> None:
                transports.pop(self.client, None)
                super().connection_lost(exc)

        return TrackingH11Protocol

    def close(self) -> None:
        self.store.close()

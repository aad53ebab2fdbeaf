"""Outgoing webhooks as Frappe sends them: JSON body, HMAC-SHA256 signature, async delivery with retries."""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

SIGNATURE_HEADER = "X-Frappe-Webhook-Signature"
WEBHOOK_TIMEOUT_S = 5.0  # Frappe's request timeout for webhooks


def sign_webhook(body: bytes, secret: str) -> str:
    """base64(HMAC-SHA256(key=secret UTF-8, msg=body)), the value of X-Frappe-Webhook-Signature."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()).decode()


def webhook_body(doctype: str, name: str, modified: Any, event: str) -> bytes:
    # Frappe serialises with json.dumps(data, default=str): default separators, ASCII escapes.
    data = {"doctype": doctype, "name": name, "modified": modified, "event": event}
    return json.dumps(data, default=str).encode("utf-8")


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str
    doctypes: frozenset[str] | None = None

    def wants(self, doctype: str) -> bool:
        return self.doctypes is None or doctype in self.doctypes


class WebhookDispatcher:
    """Queues deliveries onto the site's event loop; callable from any thread, never blocks the caller."""

    def __init__(self, retry_delays: tuple[float, ...] = (1.0, 4.0), attempts: int = 3) -> None:
        self.retry_delays = retry_delays
        self.attempts = attempts
        self.targets: list[WebhookTarget] = []
        self.log: collections.deque[dict[str, Any]] = collections.deque(maxlen=2000)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[tuple[WebhookTarget, bytes, dict[str, str]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    # ------------------------------------------------------------ configuration

    def add(self, url: str, secret: str, doctypes: list[str] | None = None) -> None:
        with self._lock:
            self.targets.append(WebhookTarget(url, secret, frozenset(doctypes) if doctypes else None))

    def clear(self) -> None:
        with self._lock:
            self.targets.clear()

    # ------------------------------------------------------------ loop lifecycle (called by the cluster)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the server loop once it runs; flushes events emitted before start."""
        with self._lock:
            self._loop = loop
            pending, self._pending = self._pending, []
        for item in pending:
            self._spawn(*item)

    async def detach(self) -> None:
        with self._lock:
            self._loop = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ------------------------------------------------------------ delivery

    def emit(self, doctype: str, name: str, modified: Any, event: str) -> int:
        """Schedule one POST per matching target; returns how many were queued."""
        with self._lock:
            targets = [t for t in self.targets if t.wants(doctype)]
            if not targets:
                return 0
            body = webhook_body(doctype, name, modified, event)
            loop = self._loop
            for target in targets:
                headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign_webhook(body, target.secret)}
                if loop is None:
                    self._pending.append((target, body, headers))
                else:
                    loop.call_soon_threadsafe(self._spawn, target, body, headers)
        return len(targets)

    def _spawn(self, target: WebhookTarget, body: bytes, headers: dict[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(target, body, headers))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, target: WebhookTarget, body: bytes, headers: dict[str, str]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_S)
        for attempt in range(1, self.attempts + 1):
            entry: dict[str, Any] = {"url": target.url, "attempt": attempt, "body": body.decode(), "at": time.time()}
            try:
                response = await self._client.post(target.url, content=body, headers=headers)
                entry["status"] = response.status_code
                ok = response.status_code < 400  # Frappe calls raise_for_status(): any 4xx/5xx is a failure
            except httpx.HTTPError as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
                ok = False
            self.log.append(entry)
            if ok:
                return
            if attempt < self.attempts:
                delay = self.retry_delays[min(attempt - 1, len(self.retry_delays) - 1)] if self.retry_delays else 0
                await asyncio.sleep(delay)

"""Receiver fixtures: a real SQLite state file and the receiver served by uvicorn on a loopback port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from erpsync_tui.config import AppConfig
from erpsync_tui.metrics import Metrics
from erpsync_tui.store import Database, open_database
from erpsync_tui.store.models import QueueItem
from erpsync_tui.webhooks import ReceiverHandle, create_app, serve_receiver
from erpsync_tui.webhooks.app import WebhookReceiver
from erpsync_tui.webhooks.parsing import SIGNATURE_HEADER, sign

SECRET = "test-webhook-secret-0123456789"
MAX_BODY = 4096


def make_config(**webhooks: Any) -> AppConfig:
    return AppConfig.model_validate(
        {
            "sites": {"cloud": {"url": "http://127.0.0.1:1"}, "local": {"url": "http://127.0.0.1:2"}},
            "webhooks": {"max_body_bytes": MAX_BODY, **webhooks},
        }
    )


def frappe_body(doctype: str = "Customer", name: str = "CUST-0001", **extra: Any) -> bytes:
    """Bytes as Frappe sends them: json.dumps(data, default=str) with default separators."""
    return json.dumps({"doctype": doctype, "name": name, "modified": "2024-05-01 10:00:00.123456", **extra},
                      default=str).encode()


def signed(body: bytes, secret: str = SECRET, **headers: str) -> dict[str, str]:
    return {SIGNATURE_HEADER: sign(body, secret), **headers}


def queue_rows(db: Database) -> list[QueueItem]:
    with db.read() as session:
        return list(session.exec(select(QueueItem).order_by(col(QueueItem.id))).all())


@dataclass
class Running:
    handle: ReceiverHandle
    client: httpx.AsyncClient
    receiver: WebhookReceiver
    metrics: Metrics
    stored_calls: list[int]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """SQLite by default; in a module marked `backends`, each backend in turn (see tests/conftest.py)."""
    database = open_database(db_url)
    yield database
    database.dispose()


StartReceiver = Callable[..., Any]


@pytest.fixture
async def start_receiver(db: Database) -> AsyncIterator[StartReceiver]:
    """Start a receiver (port 0) with the given secret/config; everything started is stopped afterwards."""
    started: list[Running] = []

    async def start(
        *, secret: str | None = SECRET, config: AppConfig | None = None, status: dict[str, Any] | None = None
    ) -> Running:
        metrics, stored_calls = Metrics(), []
        app = create_app(config or make_config(), db, webhook_secret=secret, metrics=metrics,
                         status_provider=(lambda: dict(status)) if status is not None else None,
                         on_stored=lambda: stored_calls.append(1))
        handle = await serve_receiver(app, "127.0.0.1", 0)
        client = httpx.AsyncClient(base_url=handle.url, timeout=10)
        running = Running(handle, client, app.state.receiver, metrics, stored_calls)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.client.aclose()
        await running.handle.stop()


@pytest.fixture
async def rx(start_receiver: StartReceiver) -> Running:
    return await start_receiver()

"""The receiver over real loopback HTTP: what is stored, what is refused, and that refusals store nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest

from erpsync_tui.store import Database
from erpsync_tui.webhooks import app as app_module
from erpsync_tui.webhooks import serve_receiver
from erpsync_tui.webhooks.parsing import SIGNATURE_HEADER

from .conftest import MAX_BODY, SECRET, Running, StartReceiver, frappe_body, make_config, queue_rows, signed

pytestmark = pytest.mark.backends


async def post(rx: Running, body: bytes, *, site: str = "cloud", headers: dict[str, str] | None = None,
               params: dict[str, str] | None = None) -> httpx.Response:
    return await rx.client.post(f"/webhook/{site}", content=body, headers=signed(body) if headers is None else headers,
                                params=params)


# ------------------------------------------------------------------------------------------ accepted


async def test_signed_webhook_is_stored_before_the_answer(rx: Running, db: Database) -> None:
    body = frappe_body(name="CUST-0001", event="on_update")
    response = await post(rx, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "queued" and answer["coalesced"] is False
    [row] = queue_rows(db)
    assert row.id == answer["id"]
    assert (row.kind, row.site, row.doctype, row.name, row.status) == ("webhook", "cloud", "Customer", "CUST-0001",
                                                                        "pending")
    assert row.payload["event"] == "on_update"
    assert row.payload["modified"] == "2024-05-01 10:00:00.123456"
    assert row.payload["received_at"]
    assert row.max_attempts == 5
    assert rx.stored_calls  # the engine would be woken


async def test_missing_content_type_is_fine(rx: Running, db: Database) -> None:
    body = frappe_body(name="NO-CT")
    response = await rx.client.post("/webhook/cloud", content=body, headers={**signed(body), "Content-Type": ""})
    assert response.status_code == 200
    assert [r.name for r in queue_rows(db)] == ["NO-CT"]


@pytest.mark.parametrize(
    "form",
    [
        {"doctype": "Customer", "name": "FORM-1", "modified": "2024-05-01 10:00:00"},
        {"data": json.dumps({"doctype": "Customer", "name": "FORM-1", "modified": "2024-05-01 10:00:00"})},
    ],
    ids=["plain-fields", "data-field"],
)
async def test_form_encoded_body_is_accepted(rx: Running, db: Database, form: dict[str, str]) -> None:
    body = urlencode(form).encode()
    response = await post(rx, body, headers=signed(body, **{"Content-Type": "application/x-www-form-urlencoded"}))
    assert response.status_code == 200, response.text
    [row] = queue_rows(db)
    assert (row.doctype, row.name, row.payload["modified"]) == ("Customer", "FORM-1", "2024-05-01 10:00:00")


async def test_doctype_and_event_from_query_parameters(rx: Running, db: Database) -> None:
    body = json.dumps({"name": "ITEM-9", "modified": "2024-05-02 00:00:00"}).encode()
    response = await post(rx, body, params={"doctype": "Item", "event": "on_submit"})
    assert response.status_code == 200, response.text
    [row] = queue_rows(db)
    assert (row.doctype, row.name, row.payload["event"]) == ("Item", "ITEM-9", "on_submit")


async def test_signed_body_wins_over_query_parameters(rx: Running, db: Database) -> None:
    response = await post(rx, frappe_body(name="C-1", event="after_insert"), params={"doctype": "Item",
                                                                                    "event": "on_trash"})
    assert response.status_code == 200
    [row] = queue_rows(db)
    assert (row.doctype, row.payload["event"]) == ("Customer", "after_insert")


async def test_replayed_event_coalesces(rx: Running, db: Database) -> None:
    body = frappe_body(name="CUST-REPLAY")
    first, second = (await post(rx, body)).json(), (await post(rx, body)).json()
    assert second["id"] == first["id"]
    assert (first["coalesced"], second["coalesced"]) == (False, True)
    [row] = queue_rows(db)
    assert row.coalesced == 1


async def test_concurrent_webhooks_share_commits_and_each_gets_its_row(rx: Running, db: Database) -> None:
    bodies = [frappe_body(name=f"CONC-{i:04d}") for i in range(100)]
    responses = await asyncio.gather(*(post(rx, body) for body in bodies))
    assert [r.status_code for r in responses] == [200] * 100
    ids = [r.json()["id"] for r in responses]
    rows = {row.id: row.name for row in queue_rows(db)}
    assert len(set(ids)) == 100 and len(rows) == 100
    assert [rows[i] for i in ids] == [f"CONC-{i:04d}" for i in range(100)]  # each answer names its own row
    assert rx.receiver.writer.batches < 100  # group commit did batch


async def test_concurrent_events_for_one_document_coalesce_within_a_batch(rx: Running, db: Database) -> None:
    responses = await asyncio.gather(*(post(rx, frappe_body(name="SAME", event=f"e{i}")) for i in range(50)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(not r.json()["coalesced"] for r in responses) == 1
    [row] = queue_rows(db)
    assert row.coalesced == 49


# ------------------------------------------------------------------------------------------ refused


async def test_bad_signature_is_refused_and_nothing_stored(rx: Running, db: Database) -> None:
    body = frappe_body()
    response = await post(rx, body, headers=signed(body, secret="wrong-secret"))
    assert response.status_code == 401
    assert response.json()["reason"] == "bad_signature" and response.json()["code"] == "ERP006"
    tampered = await post(rx, frappe_body(name="OTHER"), headers=signed(body))
    assert tampered.status_code == 401
    assert queue_rows(db) == []


async def test_missing_signature_is_refused_and_nothing_stored(rx: Running, db: Database) -> None:
    response = await post(rx, frappe_body(), headers={})
    assert response.status_code == 401
    assert response.json()["reason"] == "missing_signature"
    assert queue_rows(db) == []


async def test_no_secret_configured_refuses_everything(start_receiver: StartReceiver, db: Database) -> None:
    rx = await start_receiver(secret=None)
    response = await post(rx, frappe_body())
    assert response.status_code == 503
    assert "no webhook secret is configured" in response.json()["error"]
    assert queue_rows(db) == []


async def test_oversize_body_with_content_length_is_refused(rx: Running, db: Database) -> None:
    body = frappe_body(padding="x" * (MAX_BODY + 10))
    response = await post(rx, body)
    assert response.status_code == 413
    assert response.json()["reason"] == "too_large"
    assert queue_rows(db) == []


async def test_oversize_chunked_body_is_refused_while_streaming(rx: Running, db: Database) -> None:
    body = frappe_body(padding="x" * (MAX_BODY * 2))

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(body), 1024):
            yield body[start : start + 1024]

    response = await rx.client.post("/webhook/cloud", content=chunks(), headers=signed(body))
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert queue_rows(db) == []


async def test_small_chunked_body_is_accepted(rx: Running, db: Database) -> None:
    body = frappe_body(name="CHUNKED")

    async def chunks() -> AsyncIterator[bytes]:
        yield body[:10]
        yield body[10:]

    response = await rx.client.post("/webhook/cloud", content=chunks(), headers=signed(body))
    assert response.status_code == 200
    assert [r.name for r in queue_rows(db)] == ["CHUNKED"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json at all", "neither a JSON object nor form-encoded"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b"[1, 2, 3]", "must be an object, got an array"),
        (b'"just a string"', "must be an object, got a string"),
        (b'{"doctype": "Customer"}', "missing `name`"),
        (b'{"name": "CUST-1"}', "missing `doctype`"),
        (b'{"doctype": "Customer", "name": {"nested": 1}}', "missing `name`"),
        (b'{"doctype": "Customer", "name": "' + b"N" * 200 + b'"}', "longer than 140"),
        (b"   ", "empty body"),
        (b"data=%7Bnot-json", "`data` is not JSON"),
    ],
    ids=["not-json", "invalid-utf8", "array", "string", "no-name", "no-doctype", "name-object", "long-name",
         "blank", "form-data-not-json"],
)
async def test_garbage_bodies_are_400_with_a_reason(rx: Running, db: Database, body: bytes, reason: str) -> None:
    response = await post(rx, body)
    assert response.status_code == 400, response.text
    assert reason in response.json()["error"]
    assert queue_rows(db) == []


async def test_unknown_site_is_404(rx: Running, db: Database) -> None:
    response = await post(rx, frappe_body(), site="elsewhere")
    assert response.status_code == 404
    assert response.json()["reason"] == "unknown_site"
    assert queue_rows(db) == []


async def test_unknown_doctype_is_422(rx: Running, db: Database) -> None:
    response = await post(rx, frappe_body(doctype="Journal Entry"))
    assert response.status_code == 422
    assert "'Journal Entry' is not synced" in response.json()["error"]
    assert queue_rows(db) == []


async def test_rejections_log_one_erp006_line_without_secret_or_signature(
    rx: Running, caplog: pytest.LogCaptureFixture
) -> None:
    body = frappe_body()
    forged = signed(body, secret="attacker-secret-value")
    caplog.set_level(logging.DEBUG)
    await post(rx, body, headers=forged)
    await post(rx, b"[]")
    await post(rx, frappe_body(), headers={})
    lines = [r.getMessage() for r in caplog.records if r.name == "erpsync.webhooks"]
    assert len(lines) == 3
    assert all("code=ERP006" in line for line in lines)
    everything = caplog.text + "\n".join(lines)
    assert SECRET not in everything
    assert forged[SIGNATURE_HEADER] not in everything
    assert signed(body)[SIGNATURE_HEADER] not in everything


@pytest.mark.parametrize("path", ["/webhook/", "/webhook/cloud/extra", "/webhooks/cloud"])
async def test_paths_that_are_not_one_site_fall_through_to_the_router(rx: Running, db: Database, path: str) -> None:
    body = frappe_body()
    response = await rx.client.post(path, content=body, headers=signed(body))
    assert response.status_code == 404
    assert queue_rows(db) == []


async def test_an_unexpected_error_on_the_fast_path_is_a_500_with_its_code(
    rx: Running, db: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(rx.receiver, "_verified_event", broken)
    with caplog.at_level(logging.ERROR, logger="erpsync.webhooks"):
        response = await post(rx, frappe_body())
    assert response.status_code == 500
    assert response.json()["code"] == "ERP006"
    assert "webhook handler failed code=ERP006" in caplog.text
    assert queue_rows(db) == []


@pytest.mark.sqlite_only
async def test_a_free_lock_stores_on_the_loop_without_a_thread(rx: Running, db: Database) -> None:
    response = await post(rx, frappe_body(name="INLINE-1"))
    assert response.status_code == 200
    assert (rx.receiver.writer.batches, rx.receiver.writer.inline_batches) == (1, 1)


@pytest.mark.sqlite_only
async def test_a_held_lock_sends_the_batch_to_a_thread_and_the_answer_waits_for_it(rx: Running, db: Database) -> None:
    assert db.path is not None
    blocker = sqlite3.connect(db.path, isolation_level=None)  # another process's writer, as SQLite sees it
    blocker.execute("BEGIN IMMEDIATE")
    try:
        pending = asyncio.ensure_future(post(rx, frappe_body(name="WAITED-1")))
        await asyncio.sleep(0.5)
        assert not pending.done()  # no 200 before the row is stored
        health = await asyncio.wait_for(rx.client.get("/status"), 5)  # the loop is not blocked meanwhile
        assert health.status_code == 200
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    response = await asyncio.wait_for(pending, 15)
    assert response.status_code == 200
    assert [row.name for row in queue_rows(db)] == ["WAITED-1"]
    assert rx.receiver.writer.inline_batches == 0


async def test_rejected_store_answers_503(rx: Running, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("erpsync_tui.webhooks.writer.enqueue_webhooks", broken)
    response = await post(rx, frappe_body())
    assert response.status_code == 503
    assert "disk on fire" in response.json()["error"]


# ------------------------------------------------------------------------------------------ health, status, metrics


async def test_health_reports_a_writable_database(rx: Running) -> None:
    response = await rx.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "writable",
                               "sites": {"cloud": "unknown", "local": "unknown"}}  # no engine reports them


async def test_health_includes_each_sites_state_as_the_engine_reports_it(rx: Running, db: Database) -> None:
    from datetime import timedelta

    from erpsync_tui.store.models import EngineLease, utcnow

    with db.write() as session:
        session.add(EngineLease(holder="engine:x", expires_at=utcnow() + timedelta(minutes=1),
                                info={"circuits": {"cloud": "closed", "local": "auth_refused"}}))
    response = await rx.client.get("/health")
    assert response.status_code == 200  # the receiver can still store events
    assert response.json()["status"] == "degraded"
    assert response.json()["sites"] == {"cloud": "closed", "local": "auth_refused"}


@pytest.mark.sqlite_only
async def test_health_is_503_while_the_write_lock_is_held(
    rx: Running, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(app_module, "HEALTH_TIMEOUT_S", 0.3)
    assert db.path is not None
    blocker = sqlite3.connect(db.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        response = await rx.client.get("/health")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert response.status_code == 503
    assert "no write lock" in response.json()["reason"]


async def test_status_merges_queue_depth_and_engine_state(start_receiver: StartReceiver) -> None:
    rx = await start_receiver(status={"engine": "paused", "circuits": {"cloud": "open"}})
    await post(rx, frappe_body(name="S-1"))
    await post(rx, frappe_body(name="S-2"))
    status = (await rx.client.get("/status")).json()
    assert status["queue_depth"]["pending"] == 2
    assert status["backlog"] == 2
    assert status["oldest_pending_age_seconds"] >= 0
    assert status["engine"] == "paused" and status["circuits"] == {"cloud": "open"}


async def test_status_without_pending_work(rx: Running) -> None:
    status = (await rx.client.get("/status")).json()
    assert status["oldest_pending_age_seconds"] is None
    assert status["queue_depth"]["pending"] == 0


async def test_metrics_exposition(rx: Running) -> None:
    await post(rx, frappe_body(name="M-1"))
    await post(rx, frappe_body(name="M-1"))  # coalesced: still accepted
    await post(rx, frappe_body(), headers={})
    rx.metrics.set_circuit("cloud", "open")
    response = await rx.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "erpsync_webhooks_accepted_total 2.0" in text
    assert 'erpsync_webhooks_rejected_total{reason="missing_signature"} 1.0' in text
    assert 'erpsync_queue_depth{status="pending"} 1.0' in text
    assert 'erpsync_circuit_state{site="cloud"} 2.0' in text
    assert "erpsync_sync_latency_seconds_bucket" in text


# ------------------------------------------------------------------------------------------ server lifecycle


async def test_serve_receiver_binds_an_ephemeral_port_and_stops(db: Database) -> None:
    app = app_module.create_app(make_config(), db, webhook_secret=SECRET)
    handle = await serve_receiver(app, "127.0.0.1", 0)
    assert handle.port > 0 and handle.url == f"http://127.0.0.1:{handle.port}"
    async with httpx.AsyncClient() as client:
        assert (await client.get(handle.url + "/health")).status_code == 200
    await handle.stop()
    await handle.stop()  # idempotent
    assert not handle.running
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(handle.url + "/health")


async def test_a_taken_port_raises_in_the_caller(rx: Running, db: Database) -> None:
    app = app_module.create_app(make_config(), db, webhook_secret=SECRET)
    with pytest.raises(OSError):
        await serve_receiver(app, "127.0.0.1", rx.handle.port)

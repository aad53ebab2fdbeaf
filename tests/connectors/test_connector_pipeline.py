"""The request pipeline (retries, 429 gate, circuit, paging, encoding, redaction) against httpx.MockTransport.

Deterministic and fast; the same behaviours are exercised end to end against the simulator elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors import (
    AuthenticationFailed,
    CircuitBreaker,
    CircuitOpen,
    ConnectionFailed,
    FrappeConnector,
    RateLimited,
    RequestTimeout,
    ServerError,
    ValidationFailed,
)

KEY, SECRET = "k3y0000000", "s3cr3t-do-not-leak"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def make(handler: Handler, *, circuit: CircuitBreaker | None = None, **site: Any) -> FrappeConnector:
    config = SiteConfig(url="http://erp.test", requests_per_second=1000, **site)
    return FrappeConnector(
        "cloud",
        config,
        KEY,
        SECRET,
        circuit=circuit,
        max_retries=3,
        backoff_base=0.001,
        backoff_max=1.0,
        transport=httpx.MockTransport(handler),
    )


def ok(data: Any) -> httpx.Response:
    return httpx.Response(200, json={"data": data})


def failing(times: int, status: int, then: httpx.Response, calls: list[httpx.Request]) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= times:
            return httpx.Response(status, text="<html><title>boom</title></html>")
        return then

    return handler


# --------------------------------------------------------------------------------------------- retries


async def test_transient_500_is_retried() -> None:
    calls: list[httpx.Request] = []
    async with make(failing(2, 500, ok({"name": "A"}), calls)) as conn:
        assert await conn.get("Customer", "A") == {"name": "A"}
    assert len(calls) == 3
    assert conn.stats.retries == 2 and conn.stats.requests == 3 and conn.stats.failures == 2


async def test_validation_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(417, json={"exc_type": "MandatoryError"})

    async with make(handler) as conn:
        with pytest.raises(ValidationFailed):
            await conn.update("Customer", "A", {"customer_name": ""})
    assert len(calls) == 1


async def test_insert_not_repeated_when_it_may_have_run() -> None:
    calls: list[httpx.Request] = []
    async with make(failing(1, 500, ok({"name": "A"}), calls)) as conn:
        with pytest.raises(ServerError):
            await conn.insert("Customer", {"customer_name": "A"})
    assert len(calls) == 1
    calls.clear()
    async with make(failing(1, 503, ok({"name": "A"}), calls)) as conn:
        assert await conn.insert("Customer", {"customer_name": "A"}) == {"name": "A"}
    assert len(calls) == 2


async def test_transport_errors_are_mapped_and_retried() -> None:
    calls: list[httpx.Request] = []

    async def refused(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with make(refused) as conn:
        with pytest.raises(ConnectionFailed) as info:
            await conn.insert("Customer", {"customer_name": "A"})  # never reached the site: safe to repeat
    assert len(calls) == 4
    assert info.value.retryable
    async with make(slow) as conn:
        with pytest.raises(RequestTimeout) as timeout:
            await conn.get("Customer", "A")
    assert timeout.value.code == "ERP007"


# --------------------------------------------------------------------------------------------- 429


async def test_429_holds_every_request_until_retry_after() -> None:
    arrivals: list[float] = []
    first_429: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        now = time.monotonic()
        if not first_429:
            first_429.append(now)
            return httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "0.4"})
        arrivals.append(now)
        await asyncio.sleep(0.01)
        return ok({"name": "A"})

    async with make(handler) as conn:
        first = asyncio.create_task(conn.get("Customer", "A"))
        await asyncio.sleep(0.05)  # the 429 has arrived; these must now wait for it too
        others = [asyncio.create_task(conn.get("Customer", str(i))) for i in range(4)]
        await asyncio.gather(first, *others)
    assert len(arrivals) == 5
    assert min(arrivals) >= first_429[0] + 0.39


async def test_long_ban_fails_fast_with_retry_after() -> None:
    calls: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, text="Too Many Requests", headers={"Retry-After": "3600"})

    async with make(handler) as conn:
        with pytest.raises(RateLimited) as info:
            await conn.get("Customer", "A")
        assert info.value.retry_after == 3600
        with pytest.raises(RateLimited) as again:  # held at the gate, not sent
            await conn.get("Customer", "B")
    assert len(calls) == 1
    assert again.value.retry_after is not None and again.value.retry_after > 3500


# --------------------------------------------------------------------------------------------- circuit


async def test_circuit_opens_half_opens_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=30, clock=lambda: now[0])
    healthy = [False]
    calls: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return ok({"name": "A"}) if healthy[0] else httpx.Response(502, text="bad gateway")

    async with make(handler, circuit=breaker) as conn:
        with pytest.raises(CircuitOpen) as info:
            await conn.get("Customer", "A")  # 3 failed attempts open it; the 4th is refused unsent
        assert len(calls) == 3
        assert conn.circuit_state == "open"
        assert info.value.retry_at == 30 and info.value.code == "ERP001" and info.value.retryable
        now[0] = 30.0
        assert conn.circuit_state == "half_open"
        healthy[0] = True
        assert await conn.get("Customer", "A") == {"name": "A"}
        assert conn.circuit_state == "closed"


async def test_4xx_does_not_trip_the_circuit() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"exc_type": "DoesNotExistError"})

    async with make(handler, circuit=CircuitBreaker(failure_threshold=2)) as conn:
        for _ in range(5):
            assert await conn.get("Customer", "nope") is None
        assert conn.circuit_state == "closed"


# --------------------------------------------------------------------------------------------- auth, secrets


async def test_header_and_guest_whoami() -> None:
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"message": "Guest"})

    async with make(handler) as conn:
        with pytest.raises(AuthenticationFailed):
            await conn.whoami()
    assert seen == [f"token {KEY}:{SECRET}"]


async def test_secret_echoed_by_a_proxy_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        echo = f"<html><body>bad request headers: Authorization: {request.headers['Authorization']}</body></html>"
        return httpx.Response(400, text=echo)

    async def padded(request: httpx.Request) -> httpx.Response:  # the echo straddles the 300-char clip
        return httpx.Response(502, text="x" * 210 + f" Authorization: {request.headers['Authorization']}")

    caplog.set_level(logging.DEBUG)
    errors = []
    for echo in (handler, padded):
        async with make(echo) as conn:
            with pytest.raises((ValidationFailed, ServerError)) as info:
                await conn.get("Customer", "A")
            errors.append(info.value)
    for error in errors:
        for text in (str(error), repr(error), *getattr(error, "messages", ())):
            assert SECRET[:6] not in text
    assert SECRET[:6] not in caplog.text
    assert SECRET not in repr(conn)


# --------------------------------------------------------------------------------------------- encoding


async def test_names_are_one_encoded_path_segment() -> None:
    paths: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path)
        return ok({"name": "x"})

    async with make(handler) as conn:
        await conn.get("Sales Order", "A/B #1 & 'q' \"d\" Ünïcödé 名前?")
    assert paths == [
        b"/api/resource/Sales%20Order/A%2FB%20%231%20%26%20%27q%27%20%22d%22%20%C3%9Cn%C3%AFc%C3%B6d%C3%A9%20"
        b"%E5%90%8D%E5%89%8D%3F"
    ]


# --------------------------------------------------------------------------------------------- paging


class FakeList:
    """Just enough of Frappe's list endpoint: =, >, >= filters; `modified asc, name asc` / `name asc` order."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.requests.append(params)
        filters = json.loads(params.get("filters", "[]"))
        ops = {"=": str.__eq__, ">": str.__gt__, ">=": str.__ge__}
        rows = [r for r in self.rows if all(ops[op](r[f], v) for f, op, v in filters)]
        key = (lambda r: r["name"]) if params["order_by"] == "name asc" else (lambda r: (r["modified"], r["name"]))
        rows.sort(key=key)
        start, size = int(params["limit_start"]), int(params["limit_page_length"])
        return ok(rows[start : start + size])


def ts(second: int) -> str:
    return f"2026-01-01 00:00:{second:02d}.000000"


async def test_keyset_paging_walks_a_group_larger_than_a_page() -> None:
    rows = [{"name": f"A{i}", "modified": ts(1)} for i in range(2)]
    rows += [{"name": f"B{i}", "modified": ts(5)} for i in range(7)]  # 7 rows, one timestamp, pages of 3
    rows += [{"name": f"C{i}", "modified": ts(9)} for i in range(4)]
    fake = FakeList(rows)
    async with make(fake) as conn:
        got = [r["name"] async for r in conn.list_documents("Customer", page_size=3)]
    assert got == [r["name"] for r in rows]
    assert len(fake.requests) < 12


async def test_watermark_drops_rows_already_seen_at_the_boundary() -> None:
    rows = [{"name": n, "modified": ts(s)} for n, s in [("a", 1), ("b", 3), ("c", 3), ("d", 3), ("e", 4)]]
    async with make(FakeList(rows)) as conn:
        since = [r["name"] async for r in conn.list_documents("Customer", modified_since=ts(3), page_size=2)]
        seen = [
            r["name"]
            async for r in conn.list_documents(
                "Customer", modified_since=ts(3), seen_at_watermark={"b", "c"}, page_size=2
            )
        ]
        limited = [r["name"] async for r in conn.list_documents("Customer", page_size=2, limit=3)]
    assert since == ["b", "c", "d", "e"]
    assert seen == ["d", "e"]
    assert limited == ["a", "b", "c"]


async def test_edits_while_paging_do_not_skip_rows() -> None:
    rows = [{"name": f"N{i:02d}", "modified": ts(i)} for i in range(10)]
    fake = FakeList(rows)
    async with make(fake) as conn:
        got = []
        async for row in conn.list_documents("Customer", page_size=3):
            got.append(row["name"])
            if row["name"] == "N01":
                rows[0]["modified"] = ts(59)  # N00 edited mid-pull: with offset paging N03 would be skipped
    assert sorted(set(got)) == [f"N{i:02d}" for i in range(10)]
    assert got[-1] == "N00"  # and the edit itself is picked up at the end


async def test_custom_order_uses_offset_paging_and_filters_are_json() -> None:
    fake = FakeList([{"name": f"N{i}", "modified": ts(i)} for i in range(5)])
    async with make(fake) as conn:
        got = [
            r["name"]
            async for r in conn.list_documents(
                "Customer", order_by="name asc", filters={"name": [">", "N0"]}, page_size=2
            )
        ]
    assert got == ["N1", "N2", "N3", "N4"]
    assert [q["limit_start"] for q in fake.requests] == ["0", "2", "4"]
    assert json.loads(fake.requests[0]["filters"]) == [["name", ">", "N0"]]
    assert json.loads(fake.requests[0]["fields"]) == ["name", "modified"]


async def test_count_and_delete() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/method/frappe.client.get_count":
            assert json.loads(request.url.params["filters"]) == [["customer_group", "=", "Commercial"]]
            return httpx.Response(200, json={"message": 42})
        if request.url.path.endswith("/gone"):
            return httpx.Response(404, json={"exc_type": "DoesNotExistError"})
        return httpx.Response(202, json={"data": "ok"})

    async with make(handler) as conn:
        assert await conn.count("Customer", {"customer_group": "Commercial"}) == 42
        assert await conn.delete("Customer", "here") is True
        assert await conn.delete("Customer", "gone") is False

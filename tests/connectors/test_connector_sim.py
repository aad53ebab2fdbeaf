"""The Frappe connector end to end against the simulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors import (
    AuthenticationFailed,
    CircuitBreaker,
    CircuitOpen,
    ConnectionFailed,
    ConnectorError,
    FrappeConnector,
    LinkValidationFailed,
    PermissionDenied,
    RequestTimeout,
    TimestampMismatch,
    ValidationFailed,
    connect,
)
from erpsync_tui.errors import ErrorCode

MakeConnector = Callable[..., FrappeConnector]  # the conftest fixture's type

PAGING_DOCTYPE = "Connector Paging Probe"  # unknown to the sim: permissive, hash-named, ours alone
WEIRD_CODE = 'O\'Brien/Ünïcödé 名前 #1 & "Co" ?x=1 %20'


@pytest.fixture(scope="module")
def probe(sim_cluster: Any) -> str:
    """1,000 documents of a doctype only these tests use; returns its name."""
    site = sim_cluster["cloud"]
    for i in range(1000):
        site.insert(PAGING_DOCTYPE, {"title": f"probe {i:04d}", "bucket": i % 7})
    return PAGING_DOCTYPE


def ordered(site: Any) -> list[dict[str, Any]]:
    """The probe documents as the site holds them now, in pull order (tests may have edited some)."""
    return sorted(site.all(PAGING_DOCTYPE), key=lambda d: (d["modified"], d["name"]))


def sim_requests(site: Any, status: int | None = None) -> int:
    counters = site.counters
    if status is None:
        return sum(counters.values())
    return sum(v for k, v in counters.items() if str(k).endswith(str(status)))


# --------------------------------------------------------------------------------------------- auth


async def test_whoami(make_connector: MakeConnector, cloud: Any) -> None:
    assert await make_connector().whoami() == cloud.user


async def test_bad_credentials(make_connector: MakeConnector) -> None:
    conn = make_connector(api_secret="wrong-secret")
    with pytest.raises(AuthenticationFailed) as info:
        await conn.whoami()
    assert info.value.code == ErrorCode.AUTHENTICATION
    assert info.value.status == 401 and not info.value.retryable
    assert conn.stats.requests == 1  # never retried


async def test_read_only_key_gets_permission_denied(make_connector: MakeConnector, cloud: Any) -> None:
    cloud.add_api_key("reader-key", "reader-secret-value", read_only_doctypes=["Customer"])
    conn = make_connector()
    reader = FrappeConnector("cloud", conn.config, "reader-key", "reader-secret-value")
    try:
        assert await reader.count("Customer") == cloud.count("Customer")  # reading is allowed
        with pytest.raises(PermissionDenied) as info:
            await reader.insert("Customer", {"customer_name": "Not allowed"})
        assert info.value.code == ErrorCode.AUTHENTICATION and info.value.status == 403
        assert reader.stats.requests == 2
    finally:
        await reader.aclose()


async def test_connect_probes_the_credentials(cloud: Any) -> None:
    config = SiteConfig(url=cloud.url)
    good = await connect("cloud", config, SimpleNamespace(api_key=cloud.api_key, api_secret=cloud.api_secret))
    try:
        assert await good.whoami() == cloud.user
    finally:
        await good.aclose()
    with pytest.raises(AuthenticationFailed):
        await connect("cloud", config, SimpleNamespace(api_key=cloud.api_key, api_secret="nope-nope"))


async def test_revoked_key(make_connector: MakeConnector, cloud: Any) -> None:
    cloud.set_faults(revoked=True)
    with pytest.raises(AuthenticationFailed):
        await make_connector().get("Customer", "anything")


# --------------------------------------------------------------------------------------------- listing


async def test_pages_through_a_thousand_documents(make_connector: MakeConnector, cloud: Any, probe: str) -> None:
    docs = ordered(cloud)
    conn = make_connector()
    rows = [r async for r in conn.list_documents(PAGING_DOCTYPE, fields=("name", "title"), page_size=150)]
    assert [r["name"] for r in rows] == [d["name"] for d in docs]
    assert rows[0]["title"] == docs[0]["title"]
    assert await conn.count(PAGING_DOCTYPE) == 1000
    assert await conn.count(PAGING_DOCTYPE, {"bucket": 3}) == sum(1 for d in docs if d["bucket"] == 3)
    assert conn.stats.requests == 7 + 2  # ceil(1000/150) pages, then two counts
    everything = [r async for r in conn.list_documents(PAGING_DOCTYPE, fields=("*",), limit=3)]
    assert [r["name"] for r in everything] == [d["name"] for d in docs[:3]]
    assert everything[0]["bucket"] == docs[0]["bucket"]


async def test_watermark_and_boundary_dedup(make_connector: MakeConnector, cloud: Any, probe: str) -> None:
    docs = ordered(cloud)
    conn = make_connector()
    mark = docs[600]
    inclusive = [r["name"] async for r in conn.list_documents(PAGING_DOCTYPE, modified_since=mark["modified"])]
    assert inclusive == [d["name"] for d in docs[600:]]
    after = [
        r["name"]
        async for r in conn.list_documents(
            PAGING_DOCTYPE, modified_since=mark["modified"], seen_at_watermark={mark["name"]}, page_size=64
        )
    ]
    assert after == [d["name"] for d in docs[601:]]
    limited = [r["name"] async for r in conn.list_documents(PAGING_DOCTYPE, modified_since=mark["modified"], limit=5)]
    assert limited == inclusive[:5]


async def test_incremental_pull_sees_only_changes(make_connector: MakeConnector, cloud: Any, probe: str) -> None:
    docs = ordered(cloud)
    conn = make_connector()
    last = [r async for r in conn.list_documents(PAGING_DOCTYPE, page_size=500)][-1]
    changed = [docs[10]["name"], docs[500]["name"], docs[999]["name"]]
    for name in changed:
        cloud.update(PAGING_DOCTYPE, name, {"title": f"changed {name}"})
    pulled = [
        r
        async for r in conn.list_documents(
            PAGING_DOCTYPE,
            fields=("name", "modified", "title"),
            modified_since=last["modified"],
            seen_at_watermark={last["name"]},
        )
    ]
    assert [r["name"] for r in pulled] == changed
    assert all(r["title"].startswith("changed") for r in pulled)


# --------------------------------------------------------------------------------------------- documents


async def test_crud_with_an_awkward_name(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector()
    created = await conn.insert(
        "Item", {"item_code": WEIRD_CODE, "item_name": "Weird", "item_group": "Products", "stock_uom": "Nos"}
    )
    assert created["name"] == WEIRD_CODE
    fetched = await conn.get("Item", WEIRD_CODE)
    assert fetched is not None and fetched["item_name"] == "Weird"
    updated = await conn.update("Item", WEIRD_CODE, {"item_name": "Still weird"}, modified=fetched["modified"])
    assert updated["item_name"] == "Still weird"
    assert updated["modified"] > fetched["modified"]
    assert cloud.get("Item", WEIRD_CODE)["item_name"] == "Still weird"
    assert await conn.delete("Item", WEIRD_CODE) is True
    assert await conn.get("Item", WEIRD_CODE) is None
    assert await conn.delete("Item", WEIRD_CODE) is False


async def test_stale_modified_is_a_timestamp_mismatch(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector()
    doc = await conn.insert("Customer", {"customer_name": "Stale Writer GmbH"})
    cloud.update("Customer", doc["name"], {"customer_name": "Changed elsewhere"})  # someone else saves first
    with pytest.raises(TimestampMismatch) as info:
        await conn.update("Customer", doc["name"], {"territory": "Europe"}, modified=doc["modified"])
    assert info.value.code == ErrorCode.VALIDATION and info.value.status == 417
    assert not info.value.retryable
    assert cloud.get("Customer", doc["name"])["customer_name"] == "Changed elsewhere"


async def test_link_to_a_missing_customer(make_connector: MakeConnector, cloud: Any) -> None:
    cloud.insert("Item", {"item_code": "LINK-PROBE-ITEM", "item_group": "Products", "stock_uom": "Nos"})
    order = {
        "customer": "CUST-DOES-NOT-EXIST",
        "transaction_date": "2026-03-01",
        "delivery_date": "2026-03-08",
        "items": [{"item_code": "LINK-PROBE-ITEM", "qty": 1}],
    }
    with pytest.raises(LinkValidationFailed) as info:
        await make_connector().insert("Sales Order", order)
    assert (info.value.link_doctype, info.value.link_name) == ("Customer", "CUST-DOES-NOT-EXIST")
    assert isinstance(info.value, ValidationFailed)
    assert info.value.code == ErrorCode.VALIDATION and info.value.status == 417


async def test_missing_mandatory_is_validation(make_connector: MakeConnector) -> None:
    with pytest.raises(ValidationFailed) as info:
        await make_connector().insert("Customer", {"customer_type": "Company"})
    assert info.value.exc_type == "MandatoryError"
    assert info.value.messages


# --------------------------------------------------------------------------------------------- faults


async def test_rides_through_a_share_of_500s(make_connector: MakeConnector, cloud: Any, probe: str) -> None:
    # 11 attempts per request and a breaker that tolerates 10 in a row: 0.3**10 makes a flake a non-event.
    conn = make_connector(max_retries=10, backoff_base=0.002, backoff_max=0.02, circuit=CircuitBreaker(10))
    docs = ordered(cloud)
    cloud.set_faults(error_rate=0.3)
    rows = [r["name"] async for r in conn.list_documents(PAGING_DOCTYPE, page_size=50)]
    for doc in docs[:20]:
        assert (await conn.get(PAGING_DOCTYPE, doc["name"]))["name"] == doc["name"]
    assert rows == [d["name"] for d in docs]
    assert conn.stats.retries > 0
    assert conn.circuit_state == "closed"


async def test_429_retry_after_holds_every_request(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector()
    cloud.set_faults(rate_limit_always=True, retry_after=1)
    before_429s = sim_requests(cloud, 429)
    started = time.monotonic()
    first = asyncio.create_task(conn.whoami())
    await asyncio.sleep(0.2)  # the first 429 is in; a second caller must wait for the same Retry-After
    second = asyncio.create_task(conn.whoami())
    await asyncio.sleep(0.2)
    cloud.clear_faults()
    assert await asyncio.gather(first, second) == [cloud.user, cloud.user]
    assert time.monotonic() - started >= 0.95
    assert sim_requests(cloud, 429) - before_429s == 1  # nobody hammered the site during the wait


async def test_hang_is_a_timeout(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector(timeout_seconds=0.3, max_retries=1)
    cloud.set_faults(hang=True)
    started = time.monotonic()
    with pytest.raises(RequestTimeout) as info:
        await conn.get("Customer", "anything")
    assert info.value.code == ErrorCode.TIMEOUT and info.value.retryable
    assert 0.5 <= time.monotonic() - started < 3
    assert conn.stats.requests == 2


async def test_drop_is_a_connection_failure(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector(max_retries=2)
    cloud.set_faults(drop=True)
    with pytest.raises(ConnectionFailed) as info:
        await conn.get("Customer", "anything")
    assert info.value.code == ErrorCode.CONNECTION
    assert conn.stats.requests == 3


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_circuit_opens_against_a_down_site(make_connector: MakeConnector) -> None:
    conn = make_connector(url=f"http://127.0.0.1:{closed_port()}", circuit=CircuitBreaker(3, 60), max_retries=1)
    with pytest.raises(ConnectionFailed):
        await conn.whoami()
    assert conn.circuit_state == "closed"
    with pytest.raises(CircuitOpen) as info:
        await conn.whoami()  # third failure opens it; the retry is refused unsent
    assert conn.circuit_state == "open" and conn.stats.requests == 3
    with pytest.raises(CircuitOpen):
        await conn.whoami()
    assert conn.stats.requests == 3
    assert info.value.retry_at == conn.circuit.retry_at


async def test_circuit_half_opens_and_closes_after_recovery(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector(circuit=CircuitBreaker(2, 0.3), max_retries=0)
    cloud.set_faults(drop=True)
    for _ in range(2):
        with pytest.raises(ConnectionFailed):
            await conn.whoami()
    assert conn.circuit_state == "open"
    with pytest.raises(CircuitOpen):
        await conn.whoami()
    cloud.clear_faults()
    await asyncio.sleep(0.35)
    assert conn.circuit_state == "half_open"
    assert await conn.whoami() == cloud.user
    assert conn.circuit_state == "closed"


async def test_concurrency_is_bounded(make_connector: MakeConnector, cloud: Any) -> None:
    conn = make_connector(max_concurrency=3)
    cloud.set_faults(latency_ms=50)
    started = time.monotonic()
    results = await asyncio.gather(*(conn.whoami() for _ in range(24)))
    assert results == [cloud.user] * 24
    assert conn.stats.max_in_flight == 3
    assert time.monotonic() - started >= 24 / 3 * 0.05 * 0.9


async def test_requests_per_second_is_obeyed(make_connector: MakeConnector) -> None:
    conn = make_connector(requests_per_second=10)
    started = time.monotonic()
    await asyncio.gather(*(conn.whoami() for _ in range(15)))  # a burst of 10, then 10/s
    assert time.monotonic() - started >= 0.4


async def test_secret_never_reaches_errors_or_logs(
    make_connector: MakeConnector, cloud: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-secret-value-123"
    errors: list[ConnectorError] = []

    async def collect(coro: Any) -> None:
        try:
            await coro
        except ConnectorError as exc:
            errors.append(exc)

    await collect(make_connector(api_secret=wrong).whoami())
    conn = make_connector(max_retries=1, timeout_seconds=0.3)
    await collect(conn.insert("Customer", {"customer_type": "Nonsense"}))
    cloud.set_faults(drop=True)
    await collect(conn.get("Customer", "x"))
    cloud.set_faults(drop=False, hang=True)
    await collect(conn.get("Customer", "x"))
    cloud.set_faults(hang=False, revoked=True)
    await collect(conn.get("Customer", "x"))
    assert len(errors) == 5
    texts = [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [t for e in errors for t in (str(e), repr(e), e.message)]
    for secret in (cloud.api_secret, wrong):
        assert not any(secret in t for t in texts)
    assert any("ERP00" in r.getMessage() for r in caplog.records if r.name == "erpsync.connector")


async def test_a_request_cancelled_at_any_point_leaves_the_connector_usable(
    make_connector: MakeConnector, cloud: Any
) -> None:
    # httpcore 1.0.9 leaves a connection cancelled while it connects in its pool for good (encode/httpcore#1093):
    # with one connection per client, every later request on that client ended in PoolTimeout (ERP007). Cancel
    # after every number of event-loop turns a request takes, so each of its await points is hit once.
    connector = make_connector(max_concurrency=1, timeout_seconds=1.0, max_retries=0)
    for turns in range(60):
        request = asyncio.create_task(connector.whoami())
        for _ in range(turns):
            await asyncio.sleep(0)
        request.cancel()
        await asyncio.gather(request, return_exceptions=True)
        assert await connector.whoami() == cloud.user, f"cancelled after {turns} turns"


async def test_rows_by_name_reads_each_chunk_once_and_leaves_out_unknown_names(
    make_connector: MakeConnector, cloud: Any, probe: str
) -> None:
    conn = make_connector()
    names = [doc["name"] for doc in ordered(cloud)[:600]]
    wanted = [*names, "no such probe", names[0]]  # an unknown name and a repeated one
    before = conn.stats.requests
    rows = await conn.rows_by_name(probe, wanted)
    assert set(rows) == set(names)
    assert all(rows[n]["title"] == cloud.get(probe, n)["title"] for n in names[:5])  # whole rows with "*"
    # 601 distinct names of ~13 characters of JSON each, 3,000 per chunk: 3 requests — never a second page each.
    assert conn.stats.requests - before == 3

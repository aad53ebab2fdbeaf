"""Pure helpers: path encoding, filter normalisation, timestamps, the limiter for slow sites."""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

import pytest

from erpsync_tui.config import SiteConfig
from erpsync_tui.connectors import Connector, FrappeConnector, format_timestamp, parse_timestamp
from erpsync_tui.connectors.frappe_http import _limiter
from erpsync_tui.connectors.frappe_wire import normalize_filters, quote_segment, resource_path


@pytest.mark.parametrize(
    "name",
    ["CUST/2026/001", 'O\'Brien & "Sons"', "Item #5?x=1", "Ünïcödé 名前 Ελληνικά", "100%", " lead", "a\\b"],
)
def test_quote_segment_is_one_reversible_segment(name: str) -> None:
    quoted = quote_segment(name)
    assert "/" not in quoted and "#" not in quoted and "?" not in quoted and " " not in quoted
    assert unquote(quoted) == name


def test_resource_path() -> None:
    assert resource_path("Sales Order") == "/api/resource/Sales%20Order"
    assert resource_path("Customer", "A/B") == "/api/resource/Customer/A%2FB"


def test_normalize_filters() -> None:
    assert normalize_filters(None) == []
    assert normalize_filters({"customer_group": "Commercial", "modified": [">", "2026"]}) == [
        ["customer_group", "=", "Commercial"],
        ["modified", ">", "2026"],
    ]
    assert normalize_filters({"name": ["A", "B", "C"]}) == [["name", "=", ["A", "B", "C"]]]
    assert normalize_filters([("Customer", "modified", ">", "x")]) == [["Customer", "modified", ">", "x"]]


def test_timestamps_round_trip_through_a_site_zone() -> None:
    moment = parse_timestamp("2026-03-01 09:30:00.123456", "Asia/Kolkata")
    assert moment == datetime(2026, 3, 1, 4, 0, 0, 123456, tzinfo=UTC)
    assert format_timestamp(moment, "Asia/Kolkata") == "2026-03-01 09:30:00.123456"
    assert format_timestamp(moment, "UTC") == "2026-03-01 04:00:00.123456"
    assert parse_timestamp("2026-03-01 09:30:00", "UTC").microsecond == 0


def test_sub_one_rps_limiter() -> None:
    limiter = _limiter(0.5)
    assert limiter.max_rate == 1 and limiter.time_period == 2
    assert _limiter(20).max_rate == 20


async def test_frappe_connector_satisfies_the_protocol() -> None:
    async with FrappeConnector("cloud", SiteConfig(url="http://erp.test"), "key", "secret") as conn:
        assert isinstance(conn, Connector)
        assert conn.circuit_state == "closed"

"""Paging through 10,000 documents: default page size, explicit page size, `modified asc, name asc`."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from sim_helpers import api_client

from erpsync_tui.sim import SimCluster, SimSite

N = 10_000


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[SimSite, httpx.Client]]:
    with SimCluster(["big"], seed=1) as cluster:
        site = cluster["big"]
        site.seed(N)
        with api_client(site) as client:
            yield site, client


def page_all(client: httpx.Client, page_size: int | None) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    start = 0
    while True:
        params = {"fields": '["name", "modified"]', "order_by": "modified asc, name asc", "limit_start": start}
        if page_size is not None:
            params["limit_page_length"] = page_size
        page = client.get("/api/resource/Customer", params=params).json()["data"]
        assert len(page) <= (page_size or 20)
        rows.extend(page)
        if len(page) < (page_size or 20):
            return rows
        start += len(page)


def assert_complete_and_ordered(site: SimSite, rows: list[dict[str, str]]) -> None:
    keys = [(row["modified"], row["name"]) for row in rows]
    assert len(rows) == N
    assert len({row["name"] for row in rows}) == N
    assert {row["name"] for row in rows} == set(site.names("Customer"))
    assert keys == sorted(keys)


def test_seed_is_fast_and_has_modified_ties(big: tuple[SimSite, httpx.Client]) -> None:
    site, _ = big
    modifieds = [doc["modified"] for doc in site.all("Customer")]
    assert len(set(modifieds)) < len(modifieds)  # bulk-seeded docs share timestamps: name breaks the tie


def test_page_with_default_size(big: tuple[SimSite, httpx.Client]) -> None:
    site, client = big
    assert_complete_and_ordered(site, page_all(client, None))


def test_page_with_explicit_size(big: tuple[SimSite, httpx.Client]) -> None:
    site, client = big
    assert_complete_and_ordered(site, page_all(client, 500))


def test_watermark_filter_with_ordering(big: tuple[SimSite, httpx.Client]) -> None:
    _site, client = big
    everything = client.get("/api/resource/Customer", params={
        "fields": '["name","modified"]', "order_by": "modified asc, name asc", "limit_page_length": 0}).json()["data"]
    watermark = everything[5000]["modified"]
    params = {"fields": '["name","modified"]', "order_by": "modified asc, name asc", "limit": 0,
              "filters": json.dumps([["modified", ">=", watermark]])}
    rows = client.get("/api/resource/Customer", params=params).json()["data"]
    assert rows == [row for row in everything if row["modified"] >= watermark]


def test_seed_timing() -> None:
    import time

    with SimCluster(["t"]) as cluster:
        started = time.perf_counter()
        cluster["t"].seed(4_000)  # 4,000 customers + 4,000 items + 800 orders
        assert time.perf_counter() - started < 3.0
        assert cluster["t"].count("Customer") == 4_000

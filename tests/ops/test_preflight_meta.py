"""The doctype check of `sync`, `test` and `doctor` (engine/preflight.py) reads each doctype's meta — the
DocType document — for its existence and kind, then one row for the sync user's permission to read it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.preflight import check_doctype, preflight
from erpsync_tui.sim import SimCluster

META = "GET /api/resource/{doctype}/{name} 200"


@pytest.fixture
async def cloud(cluster: SimCluster) -> AsyncIterator[FrappeConnector]:
    site = cluster["cloud"]
    config = AppConfig.model_validate({"sites": {n: {"url": s.url} for n, s in cluster.sites.items()}})
    connector = FrappeConnector("cloud", config.sites["cloud"], site.api_key, site.api_secret)
    yield connector
    await connector.aclose()


async def test_a_child_table_in_sync_doctypes_is_named_as_one(cluster: SimCluster, cloud: FrappeConnector) -> None:
    cluster["cloud"].reset_counters()
    problems = await preflight({"cloud": cloud}, ["Customer", "Sales Order Item"])
    assert [(p.code, p.doctype) for p in problems] == [("ERP003", "Sales Order Item")]
    assert "is a child table" in problems[0].message and "Remove Sales Order Item" in problems[0].fix
    assert cluster["cloud"].counters.get(META) == 2  # both doctypes' meta was read


async def test_a_doctype_the_site_made_on_its_first_insert_exists(cluster: SimCluster,
                                                                  cloud: FrappeConnector) -> None:
    assert await check_doctype("cloud", cloud, "Gadget") is not None  # not there yet: 404 on its meta
    cluster["cloud"].insert("Gadget", {"gadget_name": "G1"})
    assert await check_doctype("cloud", cloud, "Gadget") is None
    missing = await check_doctype("cloud", cloud, "Gadgett")
    assert missing is not None and "doctype 'Gadgett' does not exist on cloud" in missing.message


async def test_a_user_who_may_not_read_doctype_is_judged_by_the_row(cluster: SimCluster,
                                                                    cloud: FrappeConnector) -> None:
    cluster["cloud"].set_permissions(denied_doctypes=["DocType"])
    assert await check_doctype("cloud", cloud, "Customer") is None
    missing = await check_doctype("cloud", cloud, "Itme")
    assert missing is not None and "does not exist on cloud" in missing.message
    cluster["cloud"].set_permissions(denied_doctypes=["DocType", "Customer"])
    refused = await check_doctype("cloud", cloud, "Customer")
    assert refused is not None and "may not read Customer on cloud" in refused.message


async def test_the_meta_says_exists_but_the_rows_are_refused(cluster: SimCluster, cloud: FrappeConnector) -> None:
    cluster["cloud"].set_permissions(denied_doctypes=["Customer"])
    refused = await check_doctype("cloud", cloud, "Customer")
    assert refused is not None and refused.code == "ERP002" and "may not read Customer" in refused.message

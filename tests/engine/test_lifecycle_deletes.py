"""Deletes whose webhook never came (Frappe gave up): noticed from `Deleted Document` rows by the incremental
sync and by a full sync's complete listing — never inferred from a failed or partial listing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from erpsync_tui.engine.bulk import full_sync, incremental_sync
from erpsync_tui.sim import SimCluster
from erpsync_tui.store.models import SyncLog


def customer(name: str, **extra: Any) -> dict[str, Any]:
    return {"customer_name": name, "customer_type": "Company", "customer_group": "Commercial", **extra}


async def _pairs(engine, cluster: SimCluster, n: int = 3) -> list[tuple[str, str]]:
    for i in range(n):
        cluster["cloud"].insert("Customer", customer(f"Tracked {i}"), fire_webhooks=False)
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    return [(name, engine.state.translate_name("Customer", "cloud", name, "local"))
            for name in cluster["cloud"].names("Customer")]


def _messages(db) -> list[str]:
    with db.read() as session:
        return list(session.exec(select(SyncLog.message)).all())


async def test_a_delete_with_its_webhook_lost_reaches_the_other_site_by_the_next_incremental_sync(
    cluster: SimCluster, make_engine, db
) -> None:
    engine = make_engine()
    pairs = await _pairs(engine, cluster)
    await incremental_sync(engine, doctypes=["Customer"])  # watermarks set; nothing to do
    gone_cloud, gone_local = pairs[1]
    cluster["cloud"].delete("Customer", gone_cloud, fire_webhooks=False)  # the webhook never comes
    summary = await incremental_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert cluster["local"].get("Customer", gone_local) is None
    assert sorted(cluster["local"].names("Customer")) == sorted(local for _, local in pairs if local != gone_local)
    assert any("deleted (noticed from Deleted Document)" in m and gone_cloud in m for m in _messages(db))
    # Read once: the next run starts after that row and writes nothing.
    again = await incremental_sync(engine, doctypes=["Customer"])
    assert again.writes == 0 and again.failed == 0


async def test_a_delete_with_its_webhook_lost_reaches_the_other_site_by_a_full_sync(
    cluster: SimCluster, make_engine, db
) -> None:
    engine = make_engine()
    pairs = await _pairs(engine, cluster)
    gone_local, gone_cloud = pairs[0][1], pairs[0][0]
    cluster["local"].delete("Customer", gone_local, fire_webhooks=False)
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert cluster["cloud"].get("Customer", gone_cloud) is None
    assert cluster["cloud"].count("Customer") == cluster["local"].count("Customer") == len(pairs) - 1


async def test_a_full_sync_notices_a_vanished_document_even_without_deleted_document_rows(
    cluster: SimCluster, make_engine, db
) -> None:
    """The API user may not read `Deleted Document`: the complete listing still shows the name is gone."""
    engine = make_engine()
    pairs = await _pairs(engine, cluster)
    gone_cloud, gone_local = pairs[2]
    cluster["cloud"].set_permissions(denied_doctypes=["Deleted Document"])
    cluster["cloud"].delete("Customer", gone_cloud, fire_webhooks=False)
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0  # a full sync does not need Deleted Document
    assert cluster["local"].get("Customer", gone_local) is None
    assert any("no longer listed" in m and gone_cloud in m for m in _messages(db))


async def test_no_delete_is_inferred_from_a_failed_or_partial_listing(cluster: SimCluster, make_engine) -> None:
    engine = make_engine()
    pairs = await _pairs(engine, cluster, n=6)
    before = sorted(cluster["local"].names("Customer"))
    # Partial: a limited full sync lists only some names; the others are not taken for gone.
    partial = await full_sync(engine, doctypes=["Customer"], limit=2)
    assert partial.failed == 0
    # Failed: cloud refuses every request (revoked key) — its listing fails, and so does every read.
    cluster["cloud"].set_faults(revoked=True)
    await full_sync(engine, doctypes=["Customer"])
    await incremental_sync(engine, doctypes=["Customer"])
    cluster["cloud"].clear_faults()
    assert sorted(cluster["local"].names("Customer")) == before
    assert cluster["cloud"].count("Customer") == len(pairs)


@pytest.mark.parametrize("propagate", [True, False])
async def test_a_delete_on_one_site_after_an_edit_on_the_other_follows_the_configured_rule(
    cluster: SimCluster, make_engine, propagate: bool
) -> None:
    """The rule for a webhook-reported delete holds for one noticed late: an edit made on the survivor after
    the last sync wins over the delete (kept, and brought back where it was deleted); an untouched survivor is
    deleted too — unless `propagate_deletes` is off, then it stays."""
    engine = make_engine(propagate_deletes=propagate)
    pairs = await _pairs(engine, cluster, n=2)
    await incremental_sync(engine, doctypes=["Customer"])
    (edited_cloud, edited_local), (plain_cloud, plain_local) = pairs
    cluster["local"].update("Customer", edited_local, {"territory": "Peru"}, fire_webhooks=False)
    cluster["cloud"].delete("Customer", edited_cloud, fire_webhooks=False)
    cluster["cloud"].delete("Customer", plain_cloud, fire_webhooks=False)
    summary = await incremental_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert cluster["local"].get("Customer", edited_local)["territory"] == "Peru"  # the edit survives
    back = engine.state.translate_name("Customer", "local", edited_local, "cloud")
    assert back is not None and cluster["cloud"].get("Customer", back)["territory"] == "Peru"
    assert cluster["cloud"].names("Customer") == [back]
    assert (cluster["local"].get("Customer", plain_local) is None) is propagate


@pytest.mark.parametrize("rounds", range(3))
async def test_a_survivor_brought_back_by_two_syncs_at_once_is_created_once(
    cluster: SimCluster, make_engine, rounds: int
) -> None:
    """Deleted on cloud (webhook lost) after an edit on local: the edit is brought back to cloud. Two syncs of the
    one record run at once — the local name's (its webhook) and the cloud name's (a queued retry, or the
    Deleted Document feed) — under different name locks: one create, never two (fault soak, seed 105: "Traffic
    Customer 11" twice on cloud)."""
    import asyncio

    engine = make_engine()
    (cloud_name, local_name), = await _pairs(engine, cluster, n=1)
    cluster["local"].update("Customer", local_name, {"territory": "Peru"}, fire_webhooks=False)
    cluster["cloud"].delete("Customer", cloud_name, fire_webhooks=False)
    await asyncio.gather(engine.sync_document("Customer", "local", local_name),
                         engine.sync_document("Customer", "cloud", cloud_name))
    assert [d["territory"] for d in cluster["cloud"].all("Customer")] == ["Peru"]
    again = await full_sync(engine, doctypes=["Customer"])
    assert again.writes == 0 and again.failed == 0
    assert cluster["cloud"].count("Customer") == 1 and cluster["local"].count("Customer") == 1


async def test_a_delete_whose_propagation_failed_is_propagated_by_the_retry(
    cluster: SimCluster, make_engine, worker_for, db
) -> None:
    """Deleted on cloud (webhook lost); the DELETE of local's copy fails once (the site went down). The retry of
    the cloud name must still know the pair and delete local's copy — not find the name forgotten and stop at
    "not found" (fault soak, seed 111: a customer left on local for good, missing on cloud)."""
    import asyncio

    from erpsync_tui.connectors.base import ConnectionFailed
    from erpsync_tui.store import queue

    engine = make_engine()
    (cloud_name, local_name), = await _pairs(engine, cluster, n=1)
    cluster["cloud"].delete("Customer", cloud_name, fire_webhooks=False)
    local = engine.connectors["local"]
    real_delete = local.delete

    async def failing_delete(doctype: str, name: str) -> None:
        local.delete = real_delete  # the site is back for the retry
        raise ConnectionFailed("DELETE /api/resource/Customer: connection dropped", site="local")

    local.delete = failing_delete
    with db.write() as s:
        queue.enqueue(s, site="cloud", doctype="Customer", name=cloud_name, max_attempts=3)
    worker = worker_for(engine)
    for _ in range(4):
        await worker.drain()
        await asyncio.sleep(0.06)
    assert cluster["local"].get("Customer", local_name) is None
    assert cluster["cloud"].count("Customer") == 0
    again = await full_sync(engine, doctypes=["Customer"])
    assert again.writes == 0 and again.failed == 0 and cluster["cloud"].count("Customer") == 0

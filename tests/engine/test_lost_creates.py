"""A create whose answer was lost (a dropped connection, or the engine killed mid-request) never duplicates.

Frappe has no idempotency key, so the engine records each insert it sends (`create_attempt`, committed before
the request) and later recognises the document it made: by the hash of exactly what it sent, or — when that
document or its source was edited in the meantime — by its owner (our API user) and creation time. These
tests lose insert answers on purpose and then edit either side before the engine looks again.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import func, select

from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.sync import Outcome, SyncEngine, SyncFailed
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database
from erpsync_tui.store.models import CreateAttempt, RecordStatus, SyncRecord

from .test_sync import customer


async def lose_the_create(engine: SyncEngine, name: str) -> None:
    with pytest.raises(Exception):  # noqa: B017 - the connector's error for a dropped connection
        await engine.sync_document("Customer", "cloud", name)


def customers_named(cluster: SimCluster, site: str, customer_name: str) -> list[dict[str, Any]]:
    return [d for d in cluster[site].all("Customer") if d["customer_name"] == customer_name]


def open_attempts(db: Database) -> int:
    with db.read() as session:
        return session.exec(select(func.count()).select_from(CreateAttempt)).one()


async def assert_paired_once(engine: SyncEngine, cluster: SimCluster, cloud_name: str, customer_name: str) -> None:
    assert len(customers_named(cluster, "local", customer_name)) == 1, "duplicate on local"
    assert len(customers_named(cluster, "cloud", customer_name)) == 1, "duplicate on cloud"
    local_name = engine.state.translate_name("Customer", "cloud", cloud_name, "local")
    assert local_name == customers_named(cluster, "local", customer_name)[0]["name"]
    report = await reconcile(engine, "Customer")
    assert report.differences == [], report.as_dict()


async def test_insert_is_recorded_before_it_is_sent(cluster: SimCluster, lossy_engine, db: Database) -> None:
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Recorded First"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    assert open_attempts(db) == 1  # the attempt outlived the lost answer
    result = await engine.sync_document("Customer", "cloud", doc["name"])
    assert result.outcome == Outcome.ADOPTED
    assert open_attempts(db) == 0  # forgotten once the counterpart's name is recorded
    await assert_paired_once(engine, cluster, doc["name"], "Recorded First")


async def test_source_edited_after_a_lost_create_is_not_created_twice(cluster: SimCluster, lossy_engine) -> None:
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Edited At Source"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    cluster["cloud"].update("Customer", doc["name"], {"territory": "Egypt"}, fire_webhooks=False)
    result = await engine.sync_document("Customer", "cloud", doc["name"])
    assert "adopted our lost create" in result.detail  # by the hash of what was sent, not of what is there now
    await engine.sync_document("Customer", "cloud", doc["name"])
    await assert_paired_once(engine, cluster, doc["name"], "Edited At Source")
    assert customers_named(cluster, "local", "Edited At Source")[0]["territory"] == "Egypt"


async def test_created_copy_edited_before_the_retry_is_adopted(cluster: SimCluster, lossy_engine) -> None:
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Edited On Target"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    [made] = customers_named(cluster, "local", "Edited On Target")
    cluster["local"].update("Customer", made["name"], {"mobile_no": "+20 100"}, fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", doc["name"])  # the retry: the copy is ours, edited since
    await assert_paired_once(engine, cluster, doc["name"], "Edited On Target")
    assert customers_named(cluster, "cloud", "Edited On Target")[0]["mobile_no"] == "+20 100"  # latest wins


async def test_edited_copy_reported_by_its_own_site_is_not_created_back(cluster: SimCluster, lossy_engine) -> None:
    """The webhook of the copy arrives before the retry: it must be paired, not copied back to cloud."""
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Webhook First"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    [made] = customers_named(cluster, "local", "Webhook First")
    cluster["local"].update("Customer", made["name"], {"mobile_no": "+20 200"}, fire_webhooks=False)
    await engine.sync_document("Customer", "local", made["name"])
    await engine.sync_document("Customer", "cloud", doc["name"])
    await assert_paired_once(engine, cluster, doc["name"], "Webhook First")


async def test_unedited_copy_reported_by_its_own_site_is_recognised_by_hash(
    cluster: SimCluster, lossy_engine
) -> None:
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Echo After Loss"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    [made] = customers_named(cluster, "local", "Echo After Loss")
    result = await engine.sync_document("Customer", "local", made["name"])
    assert result.outcome == Outcome.ADOPTED
    await assert_paired_once(engine, cluster, doc["name"], "Echo After Loss")


async def test_an_edited_copy_goes_to_the_lost_create_it_resembles(cluster: SimCluster, lossy_engine) -> None:
    engine = lossy_engine(lose=2)
    first = cluster["cloud"].insert("Customer", customer("Lost One", territory="Egypt"), fire_webhooks=False)
    second = cluster["cloud"].insert("Customer", customer("Lost Two"), fire_webhooks=False)
    await lose_the_create(engine, first["name"])
    await lose_the_create(engine, second["name"])
    [made_one] = customers_named(cluster, "local", "Lost One")
    cluster["local"].update("Customer", made_one["name"], {"mobile_no": "+20 300"}, fire_webhooks=False)
    await engine.sync_document("Customer", "local", made_one["name"])  # reported by its site first
    await engine.sync_document("Customer", "cloud", first["name"])
    await engine.sync_document("Customer", "cloud", second["name"])
    await assert_paired_once(engine, cluster, first["name"], "Lost One")
    await assert_paired_once(engine, cluster, second["name"], "Lost Two")


async def lose_two_twin_creates(engine, cluster: SimCluster) -> tuple[dict, dict, dict]:
    """Two customers alike but for their names, both created on local with the answers lost: (A, B, A's copy)."""
    first = cluster["cloud"].insert("Customer", customer("Twin A"), fire_webhooks=False)
    second = cluster["cloud"].insert("Customer", customer("Twin B"), fire_webhooks=False)
    await lose_the_create(engine, first["name"])
    await lose_the_create(engine, second["name"])
    [made_a] = customers_named(cluster, "local", "Twin A")
    return first, second, made_a


async def test_a_copy_equally_like_two_lost_creates_goes_to_the_one_sent_when_it_was_made(
    cluster: SimCluster, lossy_engine
) -> None:
    """Equally alike, told apart by time: neither the copy nor either create waits on the other (a liveness bug
    the 100-kill crash run found: they used to wait on each other until all three were dead)."""
    engine = lossy_engine(lose=2)
    first, second, made_a = await lose_two_twin_creates(engine, cluster)
    cluster["local"].update("Customer", made_a["name"], {"customer_name": "Twin C"}, fire_webhooks=False)
    # As like Twin B's create as Twin A's, but made when Twin A's was sent: it is Twin A's (paired, then the
    # differing customer_name is settled by the policy).
    await engine.sync_document("Customer", "local", made_a["name"])
    assert engine.state.translate_name("Customer", "cloud", first["name"], "local") == made_a["name"]
    await engine.sync_document("Customer", "cloud", first["name"])
    assert (await engine.sync_document("Customer", "cloud", second["name"])).outcome == Outcome.ADOPTED
    assert len(cluster["local"].all("Customer")) == len(cluster["cloud"].all("Customer")) == 2
    await assert_paired_once(engine, cluster, second["name"], "Twin B")
    assert engine.state.translate_name("Customer", "cloud", first["name"], "local") == made_a["name"]


async def test_the_retry_of_a_create_reaches_the_same_copy_as_the_copy_s_webhook(
    cluster: SimCluster, lossy_engine
) -> None:
    """The other order: the create's retry decides first, and picks the same copy by the same rule."""
    engine = lossy_engine(lose=2)
    first, second, made_a = await lose_two_twin_creates(engine, cluster)
    [made_b] = customers_named(cluster, "local", "Twin B")
    cluster["local"].update("Customer", made_a["name"], {"customer_name": "Twin C"}, fire_webhooks=False)
    cluster["local"].update("Customer", made_b["name"], {"customer_name": "Twin D"}, fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", second["name"])
    await engine.sync_document("Customer", "cloud", first["name"])
    assert engine.state.translate_name("Customer", "cloud", first["name"], "local") == made_a["name"]
    assert engine.state.translate_name("Customer", "cloud", second["name"], "local") == made_b["name"]
    assert len(cluster["local"].all("Customer")) == len(cluster["cloud"].all("Customer")) == 2


async def test_a_lost_create_that_never_reached_the_site_is_sent_again(cluster: SimCluster, lossy_engine) -> None:
    """A pending create with no copy must not wait for an unrelated copy of ours: it inserts again."""
    engine = lossy_engine(lose=1)
    reached = cluster["cloud"].insert("Customer", customer("Reached"), fire_webhooks=False)
    await lose_the_create(engine, reached["name"])
    [made] = customers_named(cluster, "local", "Reached")
    cluster["local"].update("Customer", made["name"], {"customer_name": "Reached, renamed"}, fire_webhooks=False)
    never = cluster["cloud"].insert("Customer", customer("Never Reached", customer_type="Individual",
                                                         customer_group="Individual", territory="Egypt"),
                                    fire_webhooks=False)
    cluster["local"].set_faults(error_rate=1.0)  # this insert fails outright: nothing created
    with pytest.raises(Exception):  # noqa: B017
        await engine.sync_document("Customer", "cloud", never["name"])
    cluster["local"].clear_faults()
    assert (await engine.sync_document("Customer", "cloud", never["name"])).outcome == Outcome.CREATED
    await engine.sync_document("Customer", "cloud", reached["name"])
    await assert_paired_once(engine, cluster, never["name"], "Never Reached")
    assert engine.state.translate_name("Customer", "cloud", reached["name"], "local") == made["name"]


async def test_a_document_another_user_creates_meanwhile_is_not_taken_for_ours(
    cluster: SimCluster, lossy_engine, db: Database
) -> None:
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Ours, Lost"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    theirs = cluster["local"].insert("Customer", customer("Someone Else's"), fire_webhooks=False)  # as Administrator
    result = await engine.sync_document("Customer", "local", theirs["name"])
    assert result.outcome == Outcome.CREATED  # a new document: copied to cloud
    await engine.sync_document("Customer", "cloud", doc["name"])
    await assert_paired_once(engine, cluster, doc["name"], "Ours, Lost")
    with db.read() as session:
        statuses = session.exec(select(SyncRecord.status)).all()
    assert set(statuses) == {RecordStatus.SYNCED}


async def test_a_retry_racing_the_copy_s_own_webhook_does_not_insert_again(cluster: SimCluster, lossy_engine) -> None:
    """Seen in the crash harness: the copy's webhook paired the record while the source's retry, holding a
    view read just before, went on to insert a second copy. The insert is only sent if the record is still
    unpaired, checked in the transaction that records the attempt."""
    engine = lossy_engine(lose=1)
    doc = cluster["cloud"].insert("Customer", customer("Raced"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    [made] = customers_named(cluster, "local", "Raced")
    cluster["local"].update("Customer", made["name"], {"mobile_no": "+20 400"}, fire_webhooks=False)
    stale = engine.state.find("cloud", "Customer", doc["name"])
    assert stale is not None and "local" not in stale.sides
    stale.retrying = False  # as if the retry had read the record before the first attempt was recorded
    await engine.sync_document("Customer", "local", made["name"])  # the webhook's task pairs the copy
    policy = engine.config.policy_for("Customer")
    source = await engine.fetch(policy, "cloud", doc["name"])
    result = await engine._create_on_target(policy, stale, source, 0)
    assert result.outcome != Outcome.CREATED
    await assert_paired_once(engine, cluster, doc["name"], "Raced")


async def test_an_engine_that_lost_its_lease_sends_no_create(cluster: SimCluster, db: Database, make_engine) -> None:
    """After a stall long enough for a successor to take over, a stale engine must not create anything."""
    from erpsync_tui.errors import ErrorCode
    from erpsync_tui.store import control

    engine = make_engine()
    engine.fence = "engine-a"
    control.acquire_lease(db, "engine-b", ttl=60)  # the successor holds the lease now
    doc = cluster["cloud"].insert("Customer", customer("Fenced"), fire_webhooks=False)
    with pytest.raises(SyncFailed, match="no longer holds the engine lease") as failure:
        await engine.sync_document("Customer", "cloud", doc["name"])
    assert failure.value.code == ErrorCode.QUEUE
    assert customers_named(cluster, "local", "Fenced") == []
    control.release_lease(db, "engine-b")
    control.acquire_lease(db, "engine-a", ttl=60)
    assert (await engine.sync_document("Customer", "cloud", doc["name"])).outcome == Outcome.CREATED

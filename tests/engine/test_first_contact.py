"""Issue 13: each policy × field-level merge on/off × (first contact, steady state, after a lost create).

First contact (two documents that were never synced together) has no base: the policy decides the whole
document, and `manual` writes nothing to either site until an operator resolves. In steady state, and after a
lost create (whose sent content is the copy's real ancestor), each side's edits are changes against a real base:
disjoint edits merge when field-level merge is on, else the policy decides.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlmodel import select

from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.store.models import Conflict, ConflictStatus

from .test_lost_creates import lose_the_create
from .test_sync import business, counterpart, customer

POLICIES = ("latest_timestamp", "cloud_wins", "local_wins", "manual")


@pytest.fixture
def engine_for(lossy_engine: Callable[..., SyncEngine]) -> Callable[..., SyncEngine]:
    return lambda lose=0, **sync: lossy_engine(lose, doctypes=["Customer", "Item"], **sync)


def winner_of(policy: str) -> str | None:
    """Whose whole document a policy keeps when it decides (local edits last in every scenario)."""
    return {"cloud_wins": "cloud", "local_wins": "local", "latest_timestamp": "local"}.get(policy)


async def resolve_take_cloud(engine: SyncEngine, cluster: SimCluster) -> None:
    with engine.db.read() as session:
        open_ = session.exec(select(Conflict).where(Conflict.status == ConflictStatus.OPEN)).all()
    assert len(open_) == 1
    await engine.resolve(int(open_[0].record_id), {}, actor="test", take="cloud")


@pytest.mark.parametrize("merge", [True, False], ids=["merge", "no-merge"])
@pytest.mark.parametrize("policy", POLICIES)
async def test_first_contact_has_no_base(cluster: SimCluster, engine_for, policy: str, merge: bool) -> None:
    common = {"item_code": "SAME-1", "item_group": "Products", "stock_uom": "Nos"}
    cluster["cloud"].insert("Item", {**common, "item_name": "Cloud name", "standard_rate": 10,
                                     "description": "only cloud says this"}, fire_webhooks=False)
    cluster["local"].insert("Item", {**common, "item_name": "Local name", "standard_rate": 20}, fire_webhooks=False)
    before = {s: business(cluster[s].get("Item", "SAME-1")) for s in ("cloud", "local")}
    engine = engine_for(conflict_resolution=policy, field_level_merge=merge)
    for _ in range(2):  # the second pass finds the pair recorded: still no base to merge against
        await full_sync(engine)
    after = {s: business(cluster[s].get("Item", "SAME-1")) for s in ("cloud", "local")}
    winner = winner_of(policy)
    if winner is None:
        assert after == before, "manual wrote before an operator resolved"
        await resolve_take_cloud(engine, cluster)
        winner = "cloud"
    assert business(cluster["cloud"].get("Item", "SAME-1")) == before[winner]
    assert business(cluster["local"].get("Item", "SAME-1")) == before[winner]
    assert (await full_sync(engine)).writes == 0
    assert cluster["cloud"].count("Item") == cluster["local"].count("Item") == 1


async def _steady_pair(cluster: SimCluster, engine: SyncEngine) -> tuple[str, str]:
    doc = cluster["cloud"].insert("Customer", customer("Acme", territory="France"), fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", doc["name"])
    return doc["name"], counterpart(engine, "Customer", "cloud", doc["name"])


async def _lost_create_pair(cluster: SimCluster, engine: SyncEngine) -> tuple[str, str]:
    doc = cluster["cloud"].insert("Customer", customer("Acme", territory="France"), fire_webhooks=False)
    await lose_the_create(engine, doc["name"])
    copies = [d["name"] for d in cluster["local"].all("Customer")]
    assert len(copies) == 1
    return doc["name"], copies[0]


@pytest.mark.parametrize("scenario", ["steady", "lost_create"])
@pytest.mark.parametrize("merge", [True, False], ids=["merge", "no-merge"])
@pytest.mark.parametrize("policy", POLICIES)
async def test_disjoint_edits_against_a_real_base(cluster: SimCluster, engine_for, policy: str, merge: bool,
                                                   scenario: str) -> None:
    engine = engine_for(lose=1 if scenario == "lost_create" else 0, conflict_resolution=policy,
                        field_level_merge=merge)
    cloud_name, local_name = await (_steady_pair if scenario == "steady" else _lost_create_pair)(cluster, engine)
    cluster["cloud"].update("Customer", cloud_name, {"territory": "Japan"}, fire_webhooks=False)
    cluster["local"].update("Customer", local_name, {"mobile_no": "+1 555"}, fire_webhooks=False)
    before = {"cloud": business(cluster["cloud"].get("Customer", cloud_name)),
              "local": business(cluster["local"].get("Customer", local_name))}
    await full_sync(engine)
    after = {"cloud": business(cluster["cloud"].get("Customer", cloud_name)),
             "local": business(cluster["local"].get("Customer", local_name))}
    if merge:  # one change per side since the base: both kept, under every policy
        expected = {**before["cloud"], "mobile_no": "+1 555"}
        assert after == {"cloud": expected, "local": expected}
    elif winner_of(policy) is None:
        assert after == before, "manual wrote before an operator resolved"
        await resolve_take_cloud(engine, cluster)
        for site, name in (("cloud", cloud_name), ("local", local_name)):
            assert business(cluster[site].get("Customer", name)) == before["cloud"]
    else:
        winner = before[winner_of(policy) or ""]
        assert after == {"cloud": winner, "local": winner}
    assert (await full_sync(engine)).writes == 0
    assert cluster["cloud"].count("Customer") == cluster["local"].count("Customer") == 1

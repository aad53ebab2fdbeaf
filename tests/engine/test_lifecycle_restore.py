"""A state database restored from an older backup, then synced: amended orders and unfinished creates re-pair.

The crash harness's restore variant (tests/reliability/test_crash.py) found both, under load and SIGKILLs:

* An amendment copies its original: same customer, date and total — the Sales Order matching keys. After a
  restore that forgot the pairs of an original and its amendments, they all matched one another and were left
  ambiguous (ERP009) for ever: the sites never converged. What an amendment amends (its `amended_from`, in the
  first site's names) is part of its identity.
* A copy re-created after the backup (an edit outlived a delete on the other site, so the edited document was
  brought back under a new name): after the restore the state pairs the survivor with the deleted document, and
  the walk created the new copy back — a duplicate on each site. A paired document whose counterpart is gone and
  that matches a document to create is synced first.
* A create whose answer was lost before the backup (its record one-sided, `creating`) and whose copy was edited
  and paired after it: after the restore the copy, unknown again, was created back on the source site, and the
  retried create made a second copy — a duplicate on each site. The unfinished create is settled first.

Every test: real simulator sites over loopback HTTP, a real SQLite file, `restore_database` as the runbook's
`erpsync-tui restore` does it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, sqlite
from erpsync_tui.store.models import RecordStatus
from erpsync_tui.store.restore import restore_database

from .test_lost_creates import customers_named
from .test_sync import customer


def _backup(db: Database, tmp_path: Path) -> Path:
    assert db.path is not None
    copy = tmp_path / "older.db"
    sqlite.backup(db.path, copy)
    return copy


def _order(cluster: SimCluster, tag: str) -> dict[str, Any]:
    cloud = cluster["cloud"]
    buyer = cloud.insert("Customer", customer(f"Restore Buyer {tag}"), fire_webhooks=False)
    code = f"RST-{tag}"
    cloud.insert("Item", {"item_code": code, "item_group": "Products", "stock_uom": "Nos"}, fire_webhooks=False)
    return cloud.insert("Sales Order", {"customer": buyer["name"], "transaction_date": "2026-05-01",
                                        "delivery_date": "2026-05-10",
                                        "items": [{"item_code": code, "qty": 3, "rate": 7}]}, fire_webhooks=False)


def _orders(cluster: SimCluster, site: str) -> list[dict[str, Any]]:
    return cluster[site].all("Sales Order")


async def _converged(engine: SyncEngine, cluster: SimCluster, doctype: str) -> None:
    report = await reconcile(engine, doctype)
    assert report.differences == [], report.as_dict()
    assert cluster["cloud"].count(doctype) == cluster["local"].count(doctype)


async def test_an_order_amended_after_the_backup_re_pairs_with_its_amendment(
        cluster: SimCluster, make_engine, db: Database, tmp_path: Path) -> None:
    """Original and amendment both made and synced after the backup: four look-alike orders, two pairs."""
    engine = make_engine()
    backup = _backup(db, tmp_path)
    order = _order(cluster, "A")
    await full_sync(engine)
    cloud = cluster["cloud"]
    cloud.submit("Sales Order", order["name"], fire_webhooks=False)
    cloud.cancel("Sales Order", order["name"], fire_webhooks=False)
    amendment = cloud.amend("Sales Order", order["name"], {"delivery_date": "2026-06-30"}, fire_webhooks=False)
    await full_sync(engine)
    await _converged(engine, cluster, "Sales Order")
    synced = {site: sorted(d["name"] for d in _orders(cluster, site)) for site in ("cloud", "local")}

    restore_database(db, backup)
    summary = await full_sync(engine)
    assert summary.failed == 0, summary
    assert {site: sorted(d["name"] for d in _orders(cluster, site)) for site in ("cloud", "local")} == synced
    local_amendment = engine.state.translate_name("Sales Order", "cloud", amendment["name"], "local")
    assert local_amendment is not None  # paired again, not ambiguous
    assert cluster["local"].get("Sales Order", local_amendment)["amended_from"] == \
        engine.state.translate_name("Sales Order", "cloud", order["name"], "local")
    assert not [r for r in engine.state.find_many("cloud", "Sales Order", synced["cloud"]).values()
                if r.status == RecordStatus.AMBIGUOUS]
    await _converged(engine, cluster, "Sales Order")


async def test_an_amendment_amended_again_after_the_restore_is_created_once(
        cluster: SimCluster, make_engine, db: Database, tmp_path: Path) -> None:
    """The harness's story: original paired in the backup, its amendment paired after it, and after the restore
    the amendment's copy is cancelled and amended again. The new amendment is created once; nothing ambiguous."""
    engine = make_engine()
    order = _order(cluster, "B")
    cluster["cloud"].submit("Sales Order", order["name"], fire_webhooks=False)
    await full_sync(engine)
    backup = _backup(db, tmp_path)
    cluster["cloud"].cancel("Sales Order", order["name"], fire_webhooks=False)
    amendment = cluster["cloud"].amend("Sales Order", order["name"], {"delivery_date": "2026-06-30"},
                                       fire_webhooks=False)
    await full_sync(engine)
    local_amendment = engine.state.translate_name("Sales Order", "cloud", amendment["name"], "local")
    assert local_amendment is not None

    restore_database(db, backup)
    local = cluster["local"]
    local.submit("Sales Order", local_amendment, fire_webhooks=False)
    local.cancel("Sales Order", local_amendment, fire_webhooks=False)
    second = local.amend("Sales Order", local_amendment, {"delivery_date": "2026-07-31"}, fire_webhooks=False)
    summary = await full_sync(engine)
    assert summary.failed == 0, summary
    assert len(_orders(cluster, "cloud")) == len(_orders(cluster, "local")) == 3  # original, two amendments
    cloud_second = engine.state.translate_name("Sales Order", "local", second["name"], "cloud")
    assert cloud_second is not None
    assert cluster["cloud"].get("Sales Order", cloud_second)["amended_from"] == amendment["name"]
    assert cluster["cloud"].get("Sales Order", amendment["name"])["docstatus"] == 2
    await _converged(engine, cluster, "Sales Order")


async def test_a_create_unfinished_in_the_backup_and_paired_after_it_is_not_created_twice(
        cluster: SimCluster, lossy_engine: Callable[..., SyncEngine], db: Database, tmp_path: Path) -> None:
    """The backup holds a one-sided `creating` record whose copy exists; the copy is edited and paired after the
    backup. After the restore the copy is unknown again and made before the restore (likeness proves nothing
    then): it must be paired by the matching rules, not copied back, and the retried create not repeated."""
    engine = lossy_engine(lose=1, on="cloud")  # a full sync walks cloud first: the copy is met before its source
    doc = cluster["local"].insert("Customer", customer("Unfinished Before Backup"), fire_webhooks=False)
    with pytest.raises(Exception):  # noqa: B017 - the connector's error for a dropped connection
        await engine.sync_document("Customer", "local", doc["name"])  # the copy exists on cloud; answer lost
    backup = _backup(db, tmp_path)
    [copy] = customers_named(cluster, "cloud", "Unfinished Before Backup")
    cluster["cloud"].update("Customer", copy["name"], {"mobile_no": "+49 30 1"}, fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"])  # no restore yet: this full sync duplicated it too
    assert engine.state.translate_name("Customer", "local", doc["name"], "cloud") == copy["name"]

    restore_database(db, backup)
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert len(customers_named(cluster, "cloud", "Unfinished Before Backup")) == 1, "duplicate on cloud"
    assert len(customers_named(cluster, "local", "Unfinished Before Backup")) == 1, "duplicate on local"
    assert engine.state.translate_name("Customer", "local", doc["name"], "cloud") == copy["name"]
    await _converged(engine, cluster, "Customer")


async def test_after_a_restore_the_copy_of_an_unfinished_create_reported_first_is_paired_not_copied_back(
        cluster: SimCluster, lossy_engine: Callable[..., SyncEngine], db: Database, tmp_path: Path) -> None:
    """As above, but the copy's own webhook is synced first (the per-document path), then the source's retry."""
    engine = lossy_engine(lose=1, on="cloud")  # a full sync walks cloud first: the copy is met before its source
    doc = cluster["local"].insert("Customer", customer("Copy Reported First"), fire_webhooks=False)
    with pytest.raises(Exception):  # noqa: B017 - the connector's error for a dropped connection
        await engine.sync_document("Customer", "local", doc["name"])
    backup = _backup(db, tmp_path)
    [copy] = customers_named(cluster, "cloud", "Copy Reported First")
    cluster["cloud"].update("Customer", copy["name"], {"mobile_no": "+49 30 2"}, fire_webhooks=False)
    await engine.sync_document("Customer", "local", doc["name"])  # the retry adopts the edited copy
    assert engine.state.translate_name("Customer", "local", doc["name"], "cloud") == copy["name"]

    restore_database(db, backup)
    cluster["cloud"].update("Customer", copy["name"], {"mobile_no": "+49 30 3"}, fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", copy["name"])  # its webhook, before the source's retry
    await engine.sync_document("Customer", "local", doc["name"])
    assert len(customers_named(cluster, "cloud", "Copy Reported First")) == 1, "duplicate on cloud"
    assert len(customers_named(cluster, "local", "Copy Reported First")) == 1, "duplicate on local"
    assert engine.state.translate_name("Customer", "local", doc["name"], "cloud") == copy["name"]
    assert customers_named(cluster, "local", "Copy Reported First")[0]["mobile_no"] == "+49 30 3"
    await _converged(engine, cluster, "Customer")


@pytest.mark.parametrize("first", ["full_sync", "its_webhook"])
async def test_a_copy_re_created_after_the_backup_for_an_edit_that_outlived_a_delete_is_not_duplicated(
        cluster: SimCluster, make_engine, db: Database, tmp_path: Path, first: str) -> None:
    """`its_webhook`: the re-created copy is met first by its own sync (a webhook, a queued retry, the incremental
    listing), before any full sync: it matches the survivor, paired with the deleted document in the restored
    state — that pair is repaired, not the copy created back."""
    engine = make_engine()
    doc = cluster["cloud"].insert("Customer", customer("Outlived Its Delete"), fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"])
    local = engine.state.translate_name("Customer", "cloud", doc["name"], "local")
    assert local is not None
    backup = _backup(db, tmp_path)
    cluster["cloud"].delete("Customer", doc["name"], fire_webhooks=False)
    cluster["local"].update("Customer", local, {"mobile_no": "+49 30 4"}, fire_webhooks=False)
    await full_sync(engine, doctypes=["Customer"])  # edited on local after the delete: brought back to cloud
    [again] = customers_named(cluster, "cloud", "Outlived Its Delete")
    assert again["name"] != doc["name"]

    restore_database(db, backup)  # pairs local's document with the deleted one again
    if first == "its_webhook":
        await engine.sync_document("Customer", "cloud", again["name"])
        assert len(customers_named(cluster, "local", "Outlived Its Delete")) == 1, "duplicate on local"
    summary = await full_sync(engine, doctypes=["Customer"])
    assert summary.failed == 0, summary
    assert len(customers_named(cluster, "cloud", "Outlived Its Delete")) == 1, "duplicate on cloud"
    assert len(customers_named(cluster, "local", "Outlived Its Delete")) == 1, "duplicate on local"
    assert engine.state.translate_name("Customer", "local", local, "cloud") == again["name"]
    await _converged(engine, cluster, "Customer")

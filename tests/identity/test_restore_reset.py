"""Issue 13: restoring an older backup, or resetting the state, then syncing creates no document twice."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from erpsync_tui.sim import SimCluster
from erpsync_tui.store import open_database
from erpsync_tui.store.control import acquire_lease, release_lease

from .conftest import Cli

SITES = ("cloud", "local")


def counts(cluster: SimCluster) -> dict[tuple[str, str], int]:
    return {(site, doctype): cluster[site].count(doctype) for site in SITES for doctype in ("Customer", "Item")}


def add_customers(cluster: SimCluster, site: str, prefix: str, n: int) -> None:
    for i in range(n):
        cluster[site].insert("Customer", {"customer_name": f"{prefix} {i:03d}", "customer_type": "Company"},
                             fire_webhooks=False)


def test_restore_of_a_backup_taken_before_50_creates_then_sync_creates_nothing(
        run: Cli, cluster: SimCluster, tmp_path: Path) -> None:
    add_customers(cluster, "cloud", "Early", 10)
    assert run("sync", "--json").exit_code == 0
    backup = tmp_path / "before.db"
    assert run("backup", str(backup)).exit_code == 0
    add_customers(cluster, "cloud", "Late cloud", 40)  # 50 creates after the backup, from both sides
    add_customers(cluster, "local", "Late local", 10)
    cluster["local"].insert("Item", {"item_code": "SKU-LATE", "item_group": "Products", "stock_uom": "Nos"},
                            fire_webhooks=False)
    first = json.loads(run("sync", "--json").output)
    assert first["outcomes"]["created"] == 51, first
    synced = counts(cluster)
    restored = run("restore", str(backup), "--yes")
    assert restored.exit_code == 0, restored.output
    assert "kept as" in restored.output
    assert list(tmp_path.glob("state.before-restore-*.db"))
    dry = json.loads(run("match", "--format", "json").output)
    customers = next(plan for plan in dry if plan["doctype"] == "Customer")
    assert customers["counts"]["pairs"] == 50 and customers["counts"]["ambiguous"] == 0
    assert customers["to_create"] == {"cloud": [], "local": []}
    assert counts(cluster) == synced  # the dry run wrote nothing
    again = json.loads(run("sync", "--json").output)
    assert again["failed"] == 0 and again["writes"] == 0, again
    assert again["paired"] == 51
    assert counts(cluster) == synced  # zero new documents on either site
    assert json.loads(run("sync", "--json").output)["writes"] == 0


def test_restore_refuses_while_an_engine_holds_the_lease_and_a_bad_backup(
        run: Cli, cluster: SimCluster, tmp_path: Path) -> None:
    assert run("sync", "--json").exit_code == 0
    backup = tmp_path / "ok.db"
    assert run("backup", str(backup)).exit_code == 0
    db = open_database(f"sqlite:///{run.db}")
    try:
        acquire_lease(db, "serve:elsewhere", ttl=60)
        refused = run("restore", str(backup), "--yes")
        assert refused.exit_code == 1 and "holds the lease" in refused.output
        assert run("reset-state", "--yes").exit_code == 1
        release_lease(db, "serve:elsewhere")
    finally:
        db.dispose()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    assert run("restore", str(garbage), "--yes").exit_code == 3
    not_ours = tmp_path / "other.db"
    import sqlite3
    conn = sqlite3.connect(not_ours)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    bad = run("restore", str(not_ours), "--yes")
    assert bad.exit_code == 3 and "not an erpsync-tui state database" in bad.output
    assert run("restore", str(backup), input="n\n").exit_code != 0  # declined at the prompt: nothing replaced
    assert not list(tmp_path.glob("state.before-restore-*.db"))


def test_reset_state_then_sync_creates_nothing(run: Cli, cluster: SimCluster, tmp_path: Path) -> None:
    add_customers(cluster, "cloud", "Cloud", 30)
    add_customers(cluster, "local", "Local", 20)
    for site in SITES:
        cluster[site].insert("Item", {"item_code": f"SKU-{site}", "item_group": "Products", "stock_uom": "Nos"},
                             fire_webhooks=False)
    assert json.loads(run("sync", "--json").output)["failed"] == 0
    synced = counts(cluster)
    assert synced[("cloud", "Customer")] == synced[("local", "Customer")] == 50
    declined = run("reset-state", input="n\n")
    assert declined.exit_code != 0
    only_items = run("reset-state", "--doctype", "Item", "--yes")
    assert only_items.exit_code == 0 and "2 records" in only_items.output, only_items.output
    reset = run("reset-state", "--yes")
    assert reset.exit_code == 0, reset.output
    assert "50 records" in reset.output and list(tmp_path.glob("state.before-reset-*.db"))
    dry = run("match", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(dry.output)))
    assert sum(1 for r in rows if r["kind"] == "pair") == 52
    again = json.loads(run("sync", "--json").output)
    assert again["failed"] == 0 and again["writes"] == 0 and again["paired"] == 52, again
    assert counts(cluster) == synced  # zero new documents on either site


def test_match_reports_duplicates_a_past_sync_left(run: Cli, cluster: SimCluster) -> None:
    cluster["cloud"].insert("Customer", {"customer_name": "Dupe AG"}, fire_webhooks=False)
    assert run("sync", "--json").exit_code == 0
    cluster["local"].insert("Customer", {"customer_name": "Dupe AG"}, fire_webhooks=False)  # a second copy
    report = run("match")
    assert report.exit_code == 1
    assert "DUPLICATE" in report.output and "Dupe AG" not in report.output.split("DUPLICATE")[0]
    data = json.loads(run("match", "--json").output)
    customers = next(plan for plan in data if plan["doctype"] == "Customer")
    assert len(customers["duplicates"]) == 1 and len(customers["duplicates"][0]["candidates"]) == 2


def test_status_counts_ambiguous_documents(run: Cli, cluster: SimCluster) -> None:
    cluster["cloud"].insert("Customer", {"customer_name": "Twin"}, fire_webhooks=False)
    for _ in range(2):
        cluster["local"].insert("Customer", {"customer_name": "Twin"}, fire_webhooks=False)
    summary = json.loads(run("sync", "--json").output)
    assert summary["outcomes"]["ambiguous"] == 3 and summary["writes"] == 0
    assert json.loads(run("status", "--json").output)["ambiguous"] == 3
    assert "ambiguous 3" in run("status").output

"""`reconcile`: every configured doctype by default, values of differing fields (secret-like ones masked),
`--json`, and `--apply` converging the sites through the engine (a reconcile_apply operator action)."""

from __future__ import annotations

import json

from erpsync_tui.engine.reconcile import MASK, masked
from erpsync_tui.sim import SimCluster


def test_reconcile_all_doctypes_values_and_apply_converges(run, cluster: SimCluster) -> None:
    cluster["cloud"].seed(4)
    assert run("sync", "--json").exit_code == 0
    customer = cluster["local"].names("Customer")[0]
    cluster["local"].update("Customer", customer, {"territory": "Japan"}, fire_webhooks=False)  # only local changed
    cluster["cloud"].insert("Customer", {"customer_name": "Only On Cloud", "customer_type": "Company"},
                            fire_webhooks=False)
    item = cluster["cloud"].names("Item")[0]
    cluster["cloud"].update("Item", item, {"item_name": "Renamed On Cloud"}, fire_webhooks=False)

    report = run("reconcile", "--json")
    assert report.exit_code == 1, report.output
    data = json.loads(report.output)
    by_doctype = {r["doctype"]: r for r in data["doctypes"]}
    assert set(by_doctype) == {"Customer", "Item", "Sales Order"}  # sync.doctypes' default: all of them
    kinds = sorted(d["kind"] for d in by_doctype["Customer"]["differences"])
    assert kinds == ["fields_differ", "missing_on:local"]
    differ = next(d for d in by_doctype["Customer"]["differences"] if d["kind"] == "fields_differ")
    assert differ["values"]["territory"]["local"] == "Japan" and differ["values"]["territory"]["cloud"] != "Japan"
    assert by_doctype["Item"]["differences"][0]["values"]["item_name"]["cloud"] == "Renamed On Cloud"
    text = run("reconcile", "--doctype", "Customer")
    assert "territory" in text.output and "Japan" in text.output

    refused = run("reconcile", "--apply", "--json")  # a script must say --yes
    assert refused.exit_code == 2
    applied = run("reconcile", "--apply", "--yes", "--json")
    assert applied.exit_code == 0, applied.output
    outcome = json.loads(applied.output)
    assert outcome["action"] == "reconcile_apply" and outcome["status"] == "done"
    assert outcome["result"].startswith("3 differences:"), outcome
    again = run("reconcile", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["differences"] == 0
    assert "Only On Cloud" in {d["customer_name"] for d in cluster["local"].all("Customer")}


def test_reconcile_refuses_a_doctype_that_is_not_configured(run) -> None:
    result = run("reconcile", "--doctype", "Itme")
    assert result.exit_code == 2 and "not a configured doctype: Itme" in result.output


def test_secret_like_fields_are_masked() -> None:
    assert masked("api_key", "abc123") == MASK
    assert masked("user_password", "hunter2") == MASK
    assert masked("access_token", "t") == MASK
    assert masked("territory", "Japan") == "Japan"
    assert masked("notes", "x" * 500).endswith("…")


def test_doctor_stops_reporting_differences_once_they_are_synced(run, cluster: SimCluster, tmp_path) -> None:
    from erpsync_tui.engine.health import check_reconcile
    from erpsync_tui.store import open_database

    cluster["cloud"].seed(4)
    assert run("sync", "--json").exit_code == 0
    customer = cluster["local"].names("Customer")[0]
    cluster["local"].update("Customer", customer, {"territory": "Japan"}, fire_webhooks=False)
    cluster["cloud"].insert("Customer", {"customer_name": "Only On Cloud", "customer_type": "Company"},
                            fire_webhooks=False)
    item = cluster["cloud"].names("Item")[0]
    cluster["cloud"].update("Item", item, {"item_name": "Renamed On Cloud"}, fire_webhooks=False)
    assert run("reconcile", "--json").exit_code == 1
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        found = check_reconcile(db)
        assert (found.status, found.value) == ("fail", "3 differences") and "min ago" in found.detail
        assert "Customer 2, Item 1" in found.detail

        assert run("sync", "--doctype", "Customer", "--json").exit_code == 0  # fixes the Customer ones only
        partly = check_reconcile(db)
        assert (partly.status, partly.value) == ("fail", "1 differences"), partly.detail
        assert "Item 1" in partly.detail and "Customer" not in partly.detail.split(": ", 1)[1]
        assert "2 of them synced since" in partly.detail

        assert run("sync", "--json").exit_code == 0
        cleared = check_reconcile(db)
        assert cleared.status == "ok" and "every one was synced since" in cleared.detail, cleared.detail
    finally:
        db.dispose()


async def test_the_scheduled_reconcile_records_names_a_later_sync_clears(run, cluster: SimCluster, config_file,
                                                                        tmp_path) -> None:
    import asyncio

    from erpsync_tui.config import load_config
    from erpsync_tui.connectors import FrappeConnector
    from erpsync_tui.engine.health import check_reconcile
    from erpsync_tui.engine.service import EngineService
    from erpsync_tui.store import open_database

    cluster["cloud"].seed(3)
    assert (await asyncio.to_thread(run, "sync", "--json")).exit_code == 0
    customer = cluster["local"].names("Customer")[0]
    cluster["local"].update("Customer", customer, {"territory": "Japan"}, fire_webhooks=False)
    config = load_config(config_file)
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    connectors = {n: FrappeConnector(n, config.sites[n], s.api_key, s.api_secret) for n, s in cluster.sites.items()}
    try:
        await EngineService(config, db, connectors)._reconcile_job()
        found = await asyncio.to_thread(check_reconcile, db)
        assert found.status == "fail" and "Customer 1" in found.detail and "scheduled" in found.detail
        assert (await asyncio.to_thread(run, "sync", "--json")).exit_code == 0
        assert (await asyncio.to_thread(check_reconcile, db)).status == "ok"
    finally:
        for connector in connectors.values():
            await connector.aclose()
        db.dispose()

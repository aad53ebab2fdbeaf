"""The engine's CLI commands against two simulator sites: exit codes, --json, and no secret in any output."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from sim_config import FAST_FAILING, QUICK_RETRIES, cli_invoker, config_yaml, site_env

from erpsync_tui.sim import SimCluster


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=3) as sim:
        yield sim


@pytest.fixture
def run(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(cluster, site_options=FAST_FAILING,
                                  extra="sync:\n  conflict_resolution: manual\n" + QUICK_RETRIES))
    for var, value in site_env(cluster).items():
        monkeypatch.setenv(var, value)
    return cli_invoker(cluster, config, tmp_path / "state.db")


def test_test_command_ok_and_failing(run, cluster: SimCluster) -> None:
    ok = run("test", "--json")
    assert ok.exit_code == 0, ok.output
    assert [r["ok"] for r in json.loads(ok.output)] == [True, True]
    cluster["local"].set_faults(revoked=True)
    bad = run("test")
    assert bad.exit_code == 1
    assert "ERP002" in bad.output and "secrets set" in bad.output


def test_sync_status_and_second_pass(run, cluster: SimCluster) -> None:
    cluster["cloud"].seed(5)
    first = run("sync", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["writes"] > 0 and summary["failed"] == 0
    again = json.loads(run("sync", "--json").output)
    assert again["writes"] == 0
    status = json.loads(run("status", "--json").output)
    assert status["tracked"] >= 11 and status["errors"] == 0 and status["conflicts"] == 0
    assert run("status").exit_code == 0


def test_sync_one_document_one_direction(run, cluster: SimCluster) -> None:
    doc = cluster["local"].insert("Customer", {"customer_name": "Solo", "customer_type": "Individual"},
                                  fire_webhooks=False)
    result = run("sync", "--doctype", "Customer", "--docname", doc["name"], "--direction", "local_to_cloud",
                 "--json")
    assert result.exit_code == 0, result.output
    assert cluster["cloud"].count("Customer") == 1
    assert run("sync", "--direction", "sideways").exit_code == 2


def test_conflicts_and_resolve(run, cluster: SimCluster) -> None:
    doc = cluster["cloud"].insert("Customer", {"customer_name": "Contested", "customer_type": "Company",
                                               "territory": "France"}, fire_webhooks=False)
    run("sync", "--doctype", "Customer")
    local_name = cluster["local"].all("Customer")[0]["name"]
    cluster["cloud"].update("Customer", doc["name"], {"territory": "Japan"}, fire_webhooks=False)
    cluster["local"].update("Customer", local_name, {"territory": "Greece"}, fire_webhooks=False)
    run("sync", "--doctype", "Customer")
    listed = json.loads(run("conflicts", "--json").output)
    assert len(listed) == 1 and listed[0]["fields"] == ["territory"]
    resolved = run("resolve", str(listed[0]["id"]), "--take", "merged", "--field", "territory=local")
    assert resolved.exit_code == 0, resolved.output
    # The outcome, not "queued": the merged value went to the site that differed (local already had Greece).
    assert "resolution written to one site" in resolved.output or "written to cloud and local" in resolved.output
    assert cluster["cloud"].get("Customer", doc["name"])["territory"] == "Greece"
    assert json.loads(run("conflicts", "--json").output) == []
    assert run("resolve", str(listed[0]["id"]), "--take", "cloud").exit_code == 1  # no longer open


def test_retry_and_reconcile(run, cluster: SimCluster, tmp_path: Path) -> None:
    doc = cluster["cloud"].insert("Customer", {"customer_name": "Retry", "customer_type": "Company"},
                                  fire_webhooks=False)
    cluster["local"].set_faults(error_rate=1.0)
    failed = run("sync", "--doctype", "Customer")  # stops before any work: local answers 500 to everything
    assert failed.exit_code == 1 and "nothing was synced" in failed.output
    cluster["local"].clear_faults()
    from erpsync_tui.store import open_database, queue

    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    with db.write() as s:  # a document whose sync failed earlier, waiting for its next attempt
        item = queue.enqueue(s, site="cloud", doctype="Customer", name=doc["name"])
        item.status, item.error_code = "failed", "ERP001"
    report = run("reconcile", "--doctype", "Customer", "--format", "csv")
    assert report.exit_code == 1 and "missing_on:local" in report.output
    retried = run("retry", "--failed", "--json")  # no engine runs: the CLI carries the action out itself
    row = json.loads(retried.output)
    assert retried.exit_code == 0, retried.output
    assert row["action"] == "retry_matching" and row["status"] == "done"
    assert row["result"] == "retried 1: 1 synced", row
    assert run("retry").exit_code == 2


def test_doctor_passes_then_names_the_failing_step(run, cluster: SimCluster) -> None:
    healthy = json.loads(run("doctor", "--json").output)
    site_checks = [c for c in healthy["checks"] if c["check"].startswith("site.")]
    assert site_checks and all(c["status"] != "fail" for c in site_checks)
    cluster["local"].set_faults(revoked=True)
    failing = run("doctor", "--json")
    assert failing.exit_code == 1
    verdict = json.loads(failing.output)["triage"]
    assert verdict["step"] == "authentication"
    assert any(check["error_code"] == "ERP002" for check in verdict["failing"])


def test_sync_with_worker_processes(run, cluster: SimCluster, caplog: pytest.LogCaptureFixture) -> None:
    cluster["cloud"].seed(150)
    with caplog.at_level(logging.INFO, logger="erpsync.engine"):
        first = run("sync", "--workers", "2", "--json")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["failed"] == 0 and summary["outcomes"]["created"] >= 150
    batches = [r for r in caplog.records if "worker processes stopped after" in r.getMessage()]
    assert batches and int(batches[0].getMessage().split("after ")[1].split()[0]) > 0
    assert json.loads(run("sync", "--json").output)["writes"] == 0  # and a second pass in-process writes nothing
    assert run("sync", "--workers", "33").exit_code == 2

"""`doctor` never says "all checks pass" when something is wrong: each blind spot of issue 15 and each corrected
code fails with exit 1 at the right triage step, with the right code and a fix that names what to do."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from erpsync_tui.cli import cli
from erpsync_tui.engine.health import record_reconcile
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import open_database
from erpsync_tui.store.models import EngineLease, QueueItem, utcnow


@pytest.fixture
def doctor(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """Run `doctor --json` with a live (fake) engine lease and webhooks off, so only the case under test fails."""
    for name, site in cluster.sites.items():
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_KEY", site.api_key)
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_SECRET", site.api_secret)
    db_path = tmp_path / "state.db"

    def run(*, state: str = "running", info: dict[str, Any] | None = None, cloud_url: str | None = None,
            doctypes: str = "[Customer, Item]", expect: int = 1) -> dict[str, Any]:
        config = tmp_path / "config.yaml"
        config.write_text(
            "sites:\n"
            f"  cloud:\n    url: {cloud_url or cluster['cloud'].url}\n    timeout_seconds: 5\n"
            f"  local:\n    url: {cluster['local'].url}\n    timeout_seconds: 5\n"
            f"sync:\n  doctypes: {doctypes}\n"
            "webhooks:\n  enabled: false\n")
        db = open_database(f"sqlite:///{db_path}")
        with db.write() as session:
            lease = session.get(EngineLease, "engine") or EngineLease(holder="engine:box:1")
            lease.state, lease.info = state, info or {"circuits": {"cloud": "closed", "local": "closed"}}
            lease.expires_at = utcnow() + timedelta(minutes=5)
            session.add(lease)
        result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(db_path), "doctor", "--json"])
        assert result.exit_code == expect, result.output
        return json.loads(result.output)

    run.db_path = db_path  # type: ignore[attr-defined]
    return run


def failing(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{c['check']} {c['target']}": c for c in report["triage"]["failing"]}


def test_a_healthy_setup_passes(doctor) -> None:
    report = doctor(expect=0)
    assert report["ok"] and report["triage"]["step"] is None


def test_paused_engine(doctor) -> None:
    report = doctor(state="paused")
    assert report["triage"]["step"] == "sync_running"
    check = failing(report)["engine.running engine"]
    assert check["error_code"] == "ERP010" and "erpsync-tui resume" in check["quick_fix"]


def test_failed_items_waiting(doctor) -> None:
    db = open_database(f"sqlite:///{doctor.db_path}")
    with db.write() as session:
        session.add(QueueItem(site="cloud", doctype="Customer", name="CUST-1", status="failed", error_code="ERP007"))
    report = doctor()
    assert report["triage"]["step"] == "data_correct"
    check = failing(report)["queue.failed queue"]
    assert check["error_code"] == "ERP007" and "erpsync-tui queue --status failed" in check["quick_fix"]


def test_receiver_without_a_secret_as_the_engine_reports_it(doctor) -> None:
    report = doctor(info={"circuits": {}, "webhook_secret": False})
    assert report["triage"]["step"] == "sync_running"
    check = failing(report)["receiver.secret webhooks"]
    assert check["error_code"] == "ERP006" and "503" in check["detail"]
    assert "secrets set webhook" in check["quick_fix"]


def test_refused_webhooks(doctor) -> None:
    report = doctor(info={"circuits": {}, "webhook_secret": True, "webhooks_rejected_recent": {"bad_signature": 3}})
    assert report["triage"]["step"] == "sync_running"
    check = failing(report)["receiver.rejected webhooks"]
    assert check["error_code"] == "ERP006" and "bad_signature 3" in check["detail"]


def test_reconcile_found_differences(doctor) -> None:
    record_reconcile(open_database(f"sqlite:///{doctor.db_path}"), {"Customer": 2, "Item": 0}, source="scheduled")
    report = doctor()
    assert report["triage"]["step"] == "data_correct"
    check = failing(report)["sync.reconcile sync"]
    assert check["error_code"] == "ERP009" and "Customer 2" in check["detail"]
    assert "erpsync-tui reconcile" in check["quick_fix"]


def test_clock_skew_between_the_sites(doctor, cluster: SimCluster) -> None:
    cluster["local"].set_faults(clock_offset_s=120)
    report = doctor()
    assert report["triage"]["step"] == "data_correct"
    check = failing(report)["sites.clock sites"]
    assert check["error_code"] == "ERP009"
    assert re.search(r"local is 1(19|20|21) s ahead", check["detail"])  # HTTP dates have whole seconds
    assert "cloud 20" in check["detail"] and "local 20" in check["detail"]  # each site's own time


def test_429_is_a_rate_limit_at_the_connection_step(doctor, cluster: SimCluster) -> None:
    cluster["cloud"].set_faults(rate_limit_always=True)
    report = doctor()
    assert report["triage"]["step"] == "connection"
    check = failing(report)["site.reachable cloud"]
    assert check["error_code"] == "ERP005" and "requests_per_second" in check["quick_fix"]


def test_500_is_not_a_dns_problem(doctor, cluster: SimCluster) -> None:
    cluster["cloud"].set_faults(error_rate=1.0)
    report = doctor()
    assert report["triage"]["step"] == "connection"
    check = failing(report)["site.reachable cloud"]
    assert check["error_code"] == "ERP001" and "Error Log" in check["quick_fix"]
    assert "DNS and the firewall" not in check["quick_fix"]


def test_unreachable_fix_names_the_real_url(doctor) -> None:
    report = doctor(cloud_url="http://127.0.0.1:9")
    check = failing(report)["site.reachable cloud"]
    assert check["error_code"] == "ERP001"
    assert "curl -I http://127.0.0.1:9/api/method/ping" in check["quick_fix"] and "<url>" not in check["quick_fix"]


def test_403_names_the_missing_permission_not_a_new_key(doctor, cluster: SimCluster) -> None:
    cluster["local"].set_permissions(denied_doctypes=["Item"])
    report = doctor()
    assert report["triage"]["step"] == "authentication"
    check = failing(report)["site.doctypes local"]
    assert check["error_code"] == "ERP002"
    assert "'read' permission on Item" in check["quick_fix"] and "Role Permission Manager" in check["quick_fix"]
    assert "generate new keys" not in check["quick_fix"]


def test_a_doctype_typo_is_named(doctor) -> None:
    report = doctor(doctypes="[Customer, Itme]")
    assert report["triage"]["step"] == "authentication"
    check = failing(report)["site.doctypes cloud"]
    assert check["error_code"] == "ERP003" and "'Itme' does not exist" in check["detail"]


def test_erp003_fix_speaks_of_a_missing_link() -> None:
    from erpsync_tui.engine.outcomes import missing_link_fix
    from erpsync_tui.errors import quick_fix

    assert "linked document" in quick_fix("ERP003")
    fix = missing_link_fix({"customer": "CUST-9"}, "local")
    assert "sync its doctype first" in fix and "exclude_fields" not in fix

"""Headless operations against two simulator sites and a running `serve`: pause/resume, queue filters,
discard, retry by filter, the actions audit trail — each one an operator_action row with its outcome."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from erpsync_tui.sim import SimCluster
from erpsync_tui.sim.webhooks import sign_webhook
from erpsync_tui.store import open_database
from erpsync_tui.store.control import engine_status
from erpsync_tui.store.models import OperatorAction

SECRET = "ops-test-webhook-secret"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=5) as sim:
        yield sim


class Ops:
    def __init__(self, cluster: SimCluster, tmp_path: Path) -> None:
        self.cluster = cluster
        self.port = free_port()
        config = tmp_path / "config.yaml"
        config.write_text(
            "sites:\n"
            # No circuit breaker in the way (threshold out of reach): the retry's outcome is then exact.
            f"  cloud:\n    url: {cluster['cloud'].url}\n    circuit_failure_threshold: 100000\n"
            f"  local:\n    url: {cluster['local'].url}\n    circuit_failure_threshold: 100000\n"
            "sync:\n  doctypes: [Customer]\n"
            "  retry: {max_attempts: 5, backoff_base_seconds: 300, backoff_max_seconds: 600}\n"
            f"webhooks:\n  port: {self.port}\n"
            "scheduler:\n  queue_interval_seconds: 0.2\n  incremental_sync_interval_seconds: 3600\n"
        )
        self.env = {**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET}
        for name, site in cluster.sites.items():
            self.env[f"ERPSYNC_{name.upper()}_API_KEY"] = site.api_key
            self.env[f"ERPSYNC_{name.upper()}_API_SECRET"] = site.api_secret
        self.db_path = tmp_path / "state.db"
        self.base = [sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db", str(self.db_path)]
        self.serve: subprocess.Popen[str] | None = None

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def json(self, *args: str) -> object:
        result = self.run(*args, "--json")
        assert result.returncode in (0, 1), result.stderr
        return json.loads(result.stdout)

    def start_serve(self) -> None:
        self.serve = subprocess.Popen([*self.base, "serve"], env=self.env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, text=True)
        self.wait_started()

    def wait_started(self) -> None:
        """The lease is taken before the receiver listens: wait for both (a webhook sent between would be refused)."""
        wait_until(lambda: self.db_path.exists() and engine_status(self.db()).mode != "stopped", 60)
        wait_until(lambda: receiver_answers(self.port), 60)

    def db(self):  # type: ignore[no-untyped-def]
        return open_database(f"sqlite:///{self.db_path}")

    def webhook_for_new_customer(self, name: str) -> str:
        doc = self.cluster["cloud"].insert("Customer", {"customer_name": name, "customer_type": "Company"},
                                           fire_webhooks=False)
        body = json.dumps({"doctype": "Customer", "name": doc["name"], "modified": doc["modified"],
                           "event": "after_insert"}).encode()
        answer = httpx.post(f"http://127.0.0.1:{self.port}/webhook/cloud", content=body,
                            headers={"X-Frappe-Webhook-Signature": sign_webhook(body, SECRET)}, timeout=10)
        assert answer.status_code == 200, answer.text
        return str(doc["name"])

    def stop(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(30)
            except subprocess.TimeoutExpired:
                self.serve.kill()


@pytest.fixture
def ops(cluster: SimCluster, tmp_path: Path) -> Iterator[Ops]:
    env = Ops(cluster, tmp_path)
    yield env
    env.stop()


def wait_until(predicate, limit: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def test_pause_stores_webhooks_resume_drains(ops: Ops, cluster: SimCluster) -> None:
    ops.start_serve()
    paused = ops.run("pause")
    assert paused.returncode == 0, paused.stderr
    assert "done" in paused.stdout and "paused" in paused.stdout
    assert engine_status(ops.db()).mode == "paused"
    for i in range(3):
        ops.webhook_for_new_customer(f"While Paused {i}")  # 200: stored although nothing syncs
    time.sleep(1.5)
    assert cluster["local"].count("Customer") == 0
    pending = ops.json("queue", "--status", "pending")
    assert len(pending) == 3 and {r["doctype"] for r in pending} == {"Customer"}
    refused = ops.run("reconcile", "--apply", "--yes", "--json")  # a write while paused is refused, not queued
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["result"].startswith("failed: ERP010 the engine is paused")
    assert cluster["local"].count("Customer") == 0
    resumed = ops.run("resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    row = json.loads(resumed.stdout)
    assert row["status"] == "done" and row["result"].startswith("running")
    wait_until(lambda: cluster["local"].count("Customer") == 3)
    trail = ops.json("actions")
    assert [r["action"] for r in trail[:3]] == ["resume", "reconcile_apply", "pause"]
    assert [r["status"] for r in trail[:3]] == ["done", "failed", "done"]
    assert all(r["processed_by"].startswith("engine:") for r in trail[:3])


def test_queue_filters_discard_and_retry_by_filter(ops: Ops, cluster: SimCluster) -> None:
    ops.start_serve()
    assert ops.run("pause").returncode == 0
    names = [ops.webhook_for_new_customer(f"Failing {i}") for i in range(3)]
    cluster["local"].set_faults(error_rate=1.0)  # every request to local answers 500
    assert ops.run("resume").returncode == 0

    def all_failed() -> bool:
        rows = ops.json("queue", "--status", "failed")
        return isinstance(rows, list) and len(rows) == 3

    wait_until(all_failed)
    cluster["local"].clear_faults()
    assert len(ops.json("queue", "--code", "ERP001")) == 3  # default statuses: failed and dead
    assert ops.json("queue", "--code", "ERP002") == []
    assert ops.json("queue", "--doctype", "Item") == []
    assert len(ops.json("queue", "--site", "cloud")) == 3
    assert ops.json("queue", "--site", "local") == []
    assert ops.json("queue", "--older-than", "1h") == []
    assert len(ops.json("queue", "--older-than", "0s")) == 3

    first = ops.json("queue", "--code", "ERP001")[-1]  # oldest
    discarded = ops.run("discard", str(first["id"]), "--json")
    assert discarded.returncode == 0, discarded.stdout + discarded.stderr
    assert json.loads(discarded.stdout)["result"] == "discarded 1"
    assert [r["id"] for r in ops.json("queue", "--status", "discarded")] == [first["id"]]
    assert ops.json("queue", "--status", "done") == []  # discarded is not done

    retried = ops.run("retry", "--code", "ERP001", "--doctype", "Customer", "--json")
    row = json.loads(retried.stdout)
    assert retried.returncode == 0, row
    assert row["action"] == "retry_matching" and row["result"] == "retried 2: 2 synced"
    assert cluster["local"].count("Customer") == 2
    local_names = {d["customer_name"] for d in cluster["local"].all("Customer")}
    assert local_names == {"Failing 1", "Failing 2"} and len(names) == 3


def test_action_waits_report_what_is_pending_and_old_actions_expire(ops: Ops) -> None:
    """No engine runs and --no-wait: the row waits; an engine that starts after max age expires it."""
    sent = ops.run("pause", "--no-wait", "--json")
    assert sent.returncode == 0
    row = json.loads(sent.stdout)
    assert row["status"] == "pending"
    db = ops.db()
    with db.write() as session:  # as if it had been sent an hour ago
        from datetime import timedelta

        action = session.get(OperatorAction, row["id"])
        action.created_at = action.created_at - timedelta(hours=1)
        session.add(action)
    ops.start_serve()
    wait_until(lambda: ops.json("actions")[0]["status"] == "expired")
    assert engine_status(db).mode == "running"  # the stale pause did not run


def test_timeout_says_what_is_still_pending(ops: Ops) -> None:
    """An engine holds the lease but does not take the action (hung): the CLI stops waiting and says so."""
    from datetime import timedelta

    from erpsync_tui.store.models import EngineLease, utcnow

    db = ops.db()
    with db.write() as session:
        session.add(EngineLease(holder="hung-engine", hostname="box", pid=1,
                                expires_at=utcnow() + timedelta(minutes=5)))
    result = ops.run("pause", "--timeout", "1")
    assert result.returncode == 1
    assert "still pending: no engine has taken it yet" in result.stderr
    assert ops.json("actions")[0]["status"] == "pending"


def test_doctor_sees_the_running_serves_missing_secret_and_refused_webhooks(ops: Ops) -> None:
    """doctor reads the running engine's own state from the database (a serve under systemd has another
    environment than the operator's shell): here serve runs without a webhook secret, doctor's shell has one."""
    serve_env = dict(ops.env)
    serve_env.pop("ERPSYNC_WEBHOOK_SECRET")
    ops.serve = subprocess.Popen([*ops.base, "serve"], env=serve_env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, text=True)
    wait_until(lambda: ops.db_path.exists() and engine_status(ops.db()).info.get("webhook_secret") is False, 60)
    body = json.dumps({"doctype": "Customer", "name": "CUST-1", "modified": "2026-01-01 00:00:00"}).encode()
    answer = httpx.post(f"http://127.0.0.1:{ops.port}/webhook/cloud", content=body,
                        headers={"X-Frappe-Webhook-Signature": sign_webhook(body, SECRET)}, timeout=10)
    assert answer.status_code == 503
    wait_until(lambda: engine_status(ops.db()).info.get("webhooks_rejected_recent", {}).get("no_secret"), 30)
    result = ops.run("doctor", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["triage"]["step"] == "sync_running"
    failing = {c["check"]: c for c in report["triage"]["failing"]}
    assert failing["receiver.secret"]["error_code"] == "ERP006"
    assert failing["receiver.rejected"]["error_code"] == "ERP006" and "no_secret 1" in failing["receiver.rejected"][
        "detail"]
    assert "receiver.listening" not in failing  # it listens: that was the blind spot


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_waiting_serve_stops_at_once_on_a_signal(ops: Ops, sig: signal.Signals) -> None:
    from datetime import timedelta

    from erpsync_tui.store.models import EngineLease, utcnow

    db = ops.db()
    with db.write() as session:  # another engine holds the lease for a long while
        session.add(EngineLease(holder="other-engine", hostname="box", pid=1,
                                expires_at=utcnow() + timedelta(minutes=10)))
    waiting = subprocess.Popen([*ops.base, "serve", "--wait"], env=ops.env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)  # started and waiting (imports, then the lease loop)
        assert waiting.poll() is None
        sent = time.monotonic()
        waiting.send_signal(sig)
        assert waiting.wait(10) == 0
        assert time.monotonic() - sent < 5
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert "stopped while waiting for the engine lease" in waiting.stderr.read()
    assert engine_status(db).holder == "other-engine"


def receiver_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code < 600
    except httpx.HTTPError:
        return False


def test_serve_prints_a_start_up_line(ops: Ops) -> None:
    ops.serve = subprocess.Popen([*ops.base, "serve"], env=ops.env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    ops.wait_started()
    ops.stop()
    err = ops.serve.stderr.read()
    line = next(x for x in err.splitlines() if x.startswith("erpsync-tui serve "))
    assert str(ops.db_path) in line and f":{ops.port}" in line and "config " in line
    assert "EngineService._tracked" not in err and "Adding job tentatively" not in err


def test_reconcile_apply_is_carried_out_by_the_running_serve(ops: Ops, cluster: SimCluster) -> None:
    ops.start_serve()
    assert ops.run("pause").returncode == 0  # past its catch-up at start; the next incremental sync is hourly
    cluster["cloud"].insert("Customer", {"customer_name": "Missed Webhook", "customer_type": "Company"},
                            fire_webhooks=False)  # a webhook Frappe gave up on: serve never heard of it
    assert ops.run("resume").returncode == 0
    report = ops.run("reconcile", "--json")
    assert report.returncode == 1
    assert json.loads(report.stdout)["differences"] == 1
    applied = ops.run("reconcile", "--apply", "--yes", "--json")
    row = json.loads(applied.stdout)
    assert applied.returncode == 0, row
    assert row["result"] == "1 differences: created 1" and row["processed_by"].startswith("engine:")
    assert json.loads(ops.run("reconcile", "--json").stdout)["differences"] == 0
    assert [d["customer_name"] for d in cluster["local"].all("Customer")] == ["Missed Webhook"]

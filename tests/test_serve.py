"""`erpsync-tui serve` as a real process: one per database, clean SIGTERM, webhooks flowing end to end."""

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
from sim_config import config_yaml, free_port, site_env

from erpsync_tui.sim import SimCluster
from erpsync_tui.sim.webhooks import sign_webhook
from erpsync_tui.store import open_database
from erpsync_tui.store.control import engine_status

SECRET = "serve-test-webhook-secret"


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=5) as sim:
        yield sim


@pytest.fixture
def setup(cluster: SimCluster, tmp_path: Path):
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(config_yaml(cluster, extra=f"webhooks:\n  port: {port}\n"
                                                 "scheduler:\n  queue_interval_seconds: 0.2\n"))
    env = {**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET, **site_env(cluster)}
    db = tmp_path / "state.db"
    base = [sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db", str(db)]
    return base, env, db, port


def wait_until(predicate, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.1)


def send_webhook_for_new_customer(cluster: SimCluster, port: int, customer_name: str) -> None:
    """A customer inserted on cloud (its own webhooks off) and the signed webhook Frappe would send for it."""
    doc = cluster["cloud"].insert("Customer", {"customer_name": customer_name, "customer_type": "Company"},
                                  fire_webhooks=False)
    body = json.dumps({"doctype": "Customer", "name": doc["name"], "modified": doc["modified"]}).encode()
    answer = httpx.post(f"http://127.0.0.1:{port}/webhook/cloud", content=body,
                        headers={"X-Frappe-Webhook-Signature": sign_webhook(body, SECRET)}, timeout=10)
    assert answer.status_code == 200, answer.text


def test_two_serve_processes_one_database_and_clean_sigterm(setup, cluster: SimCluster) -> None:
    base, env, db_path, port = setup
    first = subprocess.Popen([*base, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: db_path.exists() and engine_status(open_database(f"sqlite:///{db_path}")).mode
                   == "running", limit=60)
        db = open_database(f"sqlite:///{db_path}")
        second = subprocess.run([*base, "serve"], env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert "lease is held by" in second.stderr and str(first.pid) in second.stderr

        # A signed webhook from the cloud site reaches the receiver and the document lands on local.
        send_webhook_for_new_customer(cluster, port, "Via Webhook")
        wait_until(lambda: cluster["local"].count("Customer") == 1)

        first.send_signal(signal.SIGUSR1)  # an operator asks a running daemon where it is: stacks, no stop
        time.sleep(0.5)
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        assert engine_status(db).mode == "stopped"  # the lease was given back
    finally:
        if first.poll() is None:
            first.kill()
    output = first.stdout.read() + first.stderr.read()
    assert "most recent call first" in output and "serve_command" in output  # the stack dump SIGUSR1 asked for
    for secret in (SECRET, cluster["cloud"].api_secret):
        assert secret not in output


def test_waiting_serve_takes_over_when_the_holder_stops(setup, tmp_path: Path) -> None:
    base, env, db_path, _port = setup
    waiting_log = tmp_path / "waiting.log"
    first = subprocess.Popen([*base, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    waiting = None
    try:
        wait_until(lambda: db_path.exists() and engine_status(open_database(f"sqlite:///{db_path}")).mode
                   == "running", limit=60)
        env2 = {**env}
        waiting = subprocess.Popen([*base, "serve", "--wait", "--no-receiver"], env=env2,
                                   stdout=subprocess.DEVNULL, stderr=waiting_log.open("w"))
        time.sleep(1)
        assert waiting.poll() is None  # still waiting
        first.send_signal(signal.SIGTERM)
        first.wait(30)
        db = open_database(f"sqlite:///{db_path}")
        try:
            wait_until(lambda: engine_status(db).pid == waiting.pid, limit=30)
        except AssertionError:
            raise AssertionError(f"the waiting serve did not take over (exit {waiting.poll()}, "
                                 f"lease {engine_status(db)}):\n{waiting_log.read_text()[-3000:]}") from None
    finally:
        for proc in (first, waiting):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="receiver processes need SO_REUSEPORT (Linux)")
def test_serve_with_receiver_workers_syncs_webhooks_and_stops_them(setup, cluster: SimCluster) -> None:
    base, env, _db_path, port = setup
    config = Path(base[base.index("--config") + 1])
    config.write_text(config.read_text().replace(f"  port: {port}\n", f"  port: {port}\n  workers: 2\n"))
    serve = subprocess.Popen([*base, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: _healthy(port), limit=60)
        workers = _children(serve.pid)
        assert len(workers) == 2
        send_webhook_for_new_customer(cluster, port, "Via Worker")
        wait_until(lambda: cluster["local"].count("Customer") == 1)  # the engine, woken by a worker, synced it
        assert httpx.get(f"http://127.0.0.1:{port}/status", timeout=10).json()["engine"] == "running"
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(30) == 0
        for pid in workers:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            assert state == "Z"  # exited (reaped by nobody yet at most)
    finally:
        if serve.poll() is None:
            serve.kill()
    output = serve.stdout.read() + serve.stderr.read()
    assert "Traceback" not in output
    for secret in (SECRET, cluster["cloud"].api_secret):
        assert secret not in output


def test_demo_runs_headless_in_one_command() -> None:
    result = subprocess.run([sys.executable, "-m", "erpsync_tui", "demo", "--headless", "--seconds", "8",
                             "--seed", "8"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "demo ran 8s" in result.stdout
    tracked = int(result.stdout.split("tracked ")[1].split(",")[0])
    assert tracked >= 16  # the seeded documents were synced across
    assert "Traceback" not in result.stderr

"""High availability on PostgreSQL: two `serve` processes as two hosts on one database, the active one
killed with SIGKILL while webhooks arrive at both receivers.

Two configs that differ only in the receiver's port (as two hosts behind a load balancer would: the test
sends to both receivers directly, round-robin, and to the other one when a receiver does not answer — what
the load balancer does). 200 webhooks over 30 s, each for a document just created on one site; the holder
is killed after the 100th. Shown: the standby receives while it waits, takes the lease within
`lease_ttl_seconds` of the holder's last renewal (printed), every acknowledged webhook's document reaches
the other site exactly once, and what the console reads names the new holder within one refresh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from erpsync_tui.sim import SimCluster
from erpsync_tui.sim.webhooks import sign_webhook
from erpsync_tui.store import open_database
from erpsync_tui.store.control import engine_status
from erpsync_tui.store.models import utcnow
from erpsync_tui.store.queries import engine_lease
from erpsync_tui.tui.data import load_dashboard

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(300)]

SECRET = "handover-webhook-secret-0123456789"
TTL = 6.0
WEBHOOKS = 200
SECONDS = 30.0
REFRESH = 1.0  # console.refresh_seconds (its default)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _host_config(path: Path, cluster: SimCluster, port: int) -> Path:
    path.write_text(
        "sites:\n"
        f"  cloud:\n    url: {cluster['cloud'].url}\n    requests_per_second: 500\n"
        f"  local:\n    url: {cluster['local'].url}\n    requests_per_second: 500\n"
        f"webhooks:\n  port: {port}\n"
        f"scheduler:\n  queue_interval_seconds: 0.2\n  lease_ttl_seconds: {TTL}\n"
        f"console:\n  refresh_seconds: {REFRESH}\n"
    )
    return path


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(predicate, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {limit} s: {what}")
        time.sleep(0.05)


def test_kill_the_active_host_under_load_loses_no_webhook_and_makes_no_duplicate(
        pg_cluster, tmp_path: Path) -> None:
    url = pg_cluster.new_database()
    with SimCluster(["cloud", "local"], seed=0) as cluster:
        env = {**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET}
        for name, site in cluster.sites.items():
            env[f"ERPSYNC_{name.upper()}_API_KEY"] = site.api_key
            env[f"ERPSYNC_{name.upper()}_API_SECRET"] = site.api_secret
        ports = {"a": _free_port(), "b": _free_port()}
        procs: dict[str, subprocess.Popen[str]] = {}
        logs = {host: tmp_path / f"{host}.log" for host in ports}

        def start(host: str, *extra: str) -> None:
            config = _host_config(tmp_path / f"{host}.yaml", cluster, ports[host])
            procs[host] = subprocess.Popen(
                [sys.executable, "-m", "erpsync_tui", "--config", str(config), "--db", url, "serve", *extra],
                env={**env, "XDG_STATE_HOME": str(tmp_path / host)}, stdout=subprocess.DEVNULL,
                stderr=logs[host].open("w"), text=True)

        db = open_database(url)
        try:
            start("a")
            _wait(lambda: engine_status(db).pid == procs["a"].pid and _healthy(ports["a"]), 60, "host a holds")
            start("b", "--wait")
            _wait(lambda: _healthy(ports["b"]), 60, "the standby's receiver answers while it waits")
            assert engine_status(db).pid == procs["a"].pid

            console: list[tuple[float, int | None, str | None]] = []  # (time, holder pid, holder host)
            watching = threading.Event()

            def watch() -> None:  # what an attached console reads, one refresh at a time
                watcher = open_database(url)
                while not watching.is_set():
                    status = load_dashboard(watcher, now=utcnow(), after_log_id=None).status
                    console.append((time.time(), status.pid, status.hostname))
                    watching.wait(REFRESH)
                watcher.dispose()

            watcher = threading.Thread(target=watch)
            watcher.start()

            acknowledged: dict[str, str] = {}  # customer_name → site it was created on
            refused = 0
            killed_at = last_renewal = None
            started = time.monotonic()
            with httpx.Client(timeout=5) as client:
                for n in range(WEBHOOKS):
                    time.sleep(max(0.0, started + n * SECONDS / WEBHOOKS - time.monotonic()))
                    site = ("cloud", "local")[n % 2]
                    customer_name = f"Handover {n:03d}"
                    doc = cluster[site].insert("Customer", {"customer_name": customer_name,
                                                            "customer_type": "Company"}, fire_webhooks=False)
                    body = json.dumps({"doctype": "Customer", "name": doc["name"], "modified": doc["modified"],
                                       "event": "after_insert"}).encode()
                    order = ("a", "b") if n % 4 < 2 else ("b", "a")  # round-robin over both receivers
                    for host in order:
                        try:
                            answer = client.post(f"http://127.0.0.1:{ports[host]}/webhook/{site}", content=body,
                                                 headers={"X-Frappe-Webhook-Signature": sign_webhook(body, SECRET)})
                        except httpx.TransportError:
                            continue  # that host is down: the load balancer sends it to the other one
                        if answer.status_code == 200:
                            acknowledged[customer_name] = site
                            break
                    else:
                        refused += 1
                    if n == WEBHOOKS // 2 - 1:
                        procs["a"].send_signal(signal.SIGKILL)
                        procs["a"].wait(10)
                        killed_at = time.time()
                        last_renewal = engine_status(db, now=utcnow().replace(year=2000)).heartbeat_at
            _wait(lambda: engine_status(db).pid == procs["b"].pid, 3 * TTL, "host b takes over")
            taken = engine_status(db)
            with db.read() as session:
                acquired_at = engine_lease(session).acquired_at
            takeover = (acquired_at - last_renewal).total_seconds()
            print(f"\ntake-over: host b (pid {taken.pid}) holds the lease {takeover:.2f} s after host a's last "
                  f"renewal (lease_ttl_seconds {TTL}); {acquired_at.timestamp() - killed_at:.2f} s after the kill;"
                  f" acknowledged {len(acknowledged)}/{WEBHOOKS}, unanswered {refused}")
            watching.set()
            watcher.join(10)

            # Every acknowledged webhook's document reaches the other site, once.
            def synced() -> bool:
                present = {site: {doc["customer_name"] for doc in cluster[site].store.all("Customer")}
                           for site in ("cloud", "local")}
                return all(name in present["local" if site == "cloud" else "cloud"]
                           for name, site in acknowledged.items())

            _wait(synced, 120, "every acknowledged webhook synced")
            time.sleep(2 * REFRESH)  # a late duplicate would show up now
            for site in ("cloud", "local"):
                names = Counter(doc["customer_name"] for doc in cluster[site].store.all("Customer"))
                twice = {name: count for name, count in names.items() if count > 1}
                assert twice == {}, f"duplicates on {site}: {twice}"
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
            db.dispose()

        assert refused == 0 and len(acknowledged) == WEBHOOKS  # the standby was listening all along
        assert TTL <= takeover <= TTL + 1.5, takeover
        first_seen = next(t for t, pid, _host in console if pid == taken.pid)
        assert first_seen - acquired_at.timestamp() <= REFRESH + 0.5  # named within one refresh
        assert any(pid == taken.pid and host == taken.hostname for _t, pid, host in console)

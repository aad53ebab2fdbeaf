"""Crash safety: `erpsync-tui serve` SIGKILLed at random moments under webhook load, restarted each time.

Two simulator sites run in this process with live traffic; their webhooks point at the serve process's receiver,
and a poster thread sends signed webhooks of its own. Every webhook that got HTTP 200 is recorded. The serve
process is killed (SIGKILL) 0.2–1.5 s after it is up; a `serve --wait` started beforehand takes the lease over
(the config shortens `scheduler.lease_ttl_seconds` to 1 s so a dead holder's lease lapses quickly).

After every restart and at the end:
  1. no acknowledged webhook is lost: each is a queue_item (any status) or its document is in sync_name;
  2. no document is created twice: traffic/poster names are unique by construction, so each appears at most
     once per site, and no sync record maps to two documents on one site;
  3. `PRAGMA integrity_check` is ok (SQLite; on PostgreSQL the server answers — its pages are its own).
It runs on SQLite and on PostgreSQL (`backends`).
At the end, after traffic stops and a last serve drains the queue and an incremental sync has caught up,
`reconcile` reports no differences for Customer, Item and Sales Order.

Replay a failure with CRASH_SEED=<seed printed in the failure message>.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from sqlmodel import col, func, select

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine import health
from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.sim.webhooks import sign_webhook
from erpsync_tui.store import Database, open_database
from erpsync_tui.store.control import engine_status
from erpsync_tui.store.models import (
    Conflict,
    ConflictStatus,
    QueueItem,
    QueueStatus,
    SyncLog,
    SyncName,
    Watermark,
)
from erpsync_tui.store.sqlite import integrity_check

from .duplicates import order_generations

SECRET = "crash-test-webhook-secret-0123456789"
DOCTYPES = ["Customer", "Item", "Sales Order"]
SITES = ("cloud", "local")
LEASE_TTL_S = 1.0  # the config minimum; a killed holder's successor waits at most this long (+ one poll)
# Names that traffic and the poster make unique by construction (a serial number); a second copy is a duplicate.
UNIQUE_NAME = re.compile(r"^(Traffic Customer \d+|customer_name v\d+|Crash Poster \d+)")
OPEN_QUEUE = (QueueStatus.PENDING, QueueStatus.IN_PROGRESS, QueueStatus.FAILED)
# ORPHAN_NOTE: `EngineService.start` requeues every item still in_progress (only the lease holder claims items,
# so they belong to a dead predecessor), so no item should stay leased to a killed holder. The drain still
# sets aside any that do, and the end requires each such item's document to be synced already.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Ack:
    site: str
    doctype: str
    name: str
    queue_id: int | None
    source: str  # "poster" or "site"


class Poster(threading.Thread):
    """Edits documents on the sites without their own webhooks, then posts a signed webhook for each edit."""

    def __init__(self, cluster: SimCluster, port: int, seed: int) -> None:
        super().__init__(name="crash-poster", daemon=True)
        self.cluster, self.port = cluster, port
        self.rng = random.Random(f"poster:{seed}")
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.acked: list[Ack] = []
        self.stats: collections.Counter[str] = collections.Counter()
        self.serial = 0

    def run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while not self.stop_event.is_set():
                try:
                    self.step(client)
                except Exception as exc:  # a failed edit is not an acknowledged webhook
                    self.stats[f"error:{type(exc).__name__}"] += 1
                self.stop_event.wait(0.03)

    def step(self, client: httpx.Client) -> None:
        site_name = self.rng.choice(SITES)
        site = self.cluster[site_name]
        names = site.names("Customer")
        if not names or self.rng.random() < 0.4:
            self.serial += 1
            doc = site.insert("Customer", {"customer_name": f"Crash Poster {self.serial}", "customer_type": "Company",
                                           "customer_group": "Commercial", "territory": "Germany"},
                              fire_webhooks=False)
        else:
            self.serial += 1
            doc = site.update("Customer", self.rng.choice(names), {"mobile_no": f"+49 {self.serial}"},
                              fire_webhooks=False)
        body = json.dumps({"doctype": "Customer", "name": doc["name"], "modified": str(doc["modified"]),
                           "event": "on_update"}).encode()
        try:
            answer = client.post(f"http://127.0.0.1:{self.port}/webhook/{site_name}", content=body,
                                 headers={"X-Frappe-Webhook-Signature": sign_webhook(body, SECRET),
                                          "Content-Type": "application/json"})
        except httpx.HTTPError:
            self.stats["unreachable"] += 1
            return
        self.stats[f"http:{answer.status_code}"] += 1
        if answer.status_code == 200:
            with self.lock:
                self.acked.append(Ack(site_name, "Customer", doc["name"], int(answer.json()["id"]), "poster"))

    def acks(self) -> list[Ack]:
        with self.lock:
            return list(self.acked)


@dataclass
class Harness:
    cluster: SimCluster
    tmp_path: Path
    seed: int
    port: int = field(default_factory=free_port)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)
    url: str = ""  # the state database (default: a SQLite file in tmp_path)
    kills: int = 0
    orphans: list[QueueItem] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    wiped: frozenset[Ack] = frozenset()  # acknowledged before a restore took their queue rows out

    def __post_init__(self) -> None:
        self.config_path = self.tmp_path / "config.yaml"
        self.db_path = self.tmp_path / "state.db"
        self.url = self.url or f"sqlite:///{self.db_path}"
        self.is_sqlite = self.url.startswith("sqlite")
        sites = "".join(f"  {name}:\n    url: {site.url}\n    timeout_seconds: 5\n    requests_per_second: 1000\n"
                        f"    circuit_reset_seconds: 0.5\n" for name, site in self.cluster.sites.items())
        self.config_path.write_text(
            f"sites:\n{sites}"
            f"sync:\n  doctypes: {json.dumps(DOCTYPES)}\n  batch_size: 50\n"
            "  retry:\n    max_attempts: 8\n    backoff_base_seconds: 0.1\n    backoff_max_seconds: 1.0\n"
            f"webhooks:\n  port: {self.port}\n"
            "scheduler:\n  queue_interval_seconds: 0.2\n  incremental_sync_interval_seconds: 1.0\n"
            f"  health_interval_seconds: 600\n  lease_ttl_seconds: {LEASE_TTL_S}\n"
        )
        self.env = {**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET}
        for name, site in self.cluster.sites.items():
            self.env[f"ERPSYNC_{name.upper()}_API_KEY"] = site.api_key
            self.env[f"ERPSYNC_{name.upper()}_API_SECRET"] = site.api_secret
        self.db: Database | None = None

    # ------------------------------------------------------------------ processes

    def spawn(self) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"serve-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "erpsync_tui", "--config", str(self.config_path), "--db", self.url,
             "serve", "--wait"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def output(self, proc: subprocess.Popen[bytes], size: int = 4000) -> str:
        index = self.procs.index(proc)
        self.logs[index].flush()
        return (self.tmp_path / f"serve-{index}.log").read_text(errors="replace")[-size:]

    def database(self) -> Database:
        if self.db is None:
            self.db = open_database(self.url)
        return self.db

    def wait_up(self, proc: subprocess.Popen[bytes], limit: float = 30.0) -> float:
        """Until `proc` holds the lease and its receiver answers /health; returns how long that took."""
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve pid {proc.pid} exited with {proc.returncode}:\n{self.output(proc)}")
            if (not self.is_sqlite or self.db_path.exists()) and self._holds_lease(proc) and self._healthy():
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise AssertionError(f"serve pid {proc.pid} not up within {limit}s:\n{self.output(proc)}")
            time.sleep(0.05)

    def _holds_lease(self, proc: subprocess.Popen[bytes]) -> bool:
        try:
            status = engine_status(self.database())
        except Exception:  # the schema may not exist yet
            return False
        return status.pid == proc.pid and status.mode == "running"

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.kills += 1

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        for log in self.logs:
            log.close()
        if self.db is not None:
            self.db.dispose()

    # ------------------------------------------------------------------ invariants

    def site_acks(self) -> list[Ack]:
        acks = []
        for name, site in self.cluster.sites.items():
            for entry in site.webhook_log:
                if entry.get("status") == 200 and f"/webhook/{name}" in entry["url"]:
                    body = json.loads(entry["body"])
                    acks.append(Ack(name, body["doctype"], body["name"], None, "site"))
        return acks

    def check(self, phase: str, poster: Poster | None, excused: frozenset[Ack] = frozenset()) -> dict[str, int]:
        """`excused`: acknowledgements an older backup's restore took out of the database (their queue rows were
        stored after the backup); the incremental sync from the backup's watermarks brings their documents back,
        so the final check, after the drain, excuses none."""
        db = self.database()
        # Acknowledgements first: one that arrives after the database was read must not count as lost.
        acks = (poster.acks() if poster else []) + self.site_acks()
        with db.read() as session:
            items = session.exec(select(QueueItem)).all()
            queued = {(q.site, q.doctype, q.name) for q in items}
            by_id = {q.id: (q.site, q.doctype, q.name) for q in items}
            mapped = {(s.site, s.doctype, s.name) for s in session.exec(select(SyncName)).all()}
            double_mapped = session.exec(
                select(SyncName.record_id, SyncName.site, func.count())
                .group_by(col(SyncName.record_id), col(SyncName.site))
                .having(func.count() > 1)
            ).all()
        # 1. every acknowledged webhook survived
        lost = [a for a in acks if a not in excused and not (by_id.get(a.queue_id) == (a.site, a.doctype, a.name)
                                        or (a.site, a.doctype, a.name) in queued
                                        or (a.site, a.doctype, a.name) in mapped)]
        # A restore took the queue rows of these out; lifecycle traffic may since have renamed or deleted the
        # document, so no record carries that name any more. That is no lost webhook: what happened to the
        # document must reach the other site, which the reconcile at the end checks field by field.
        lost = [a for a in lost if a not in self.wiped or self.still_named(a)]
        assert not lost, f"{phase}: {len(lost)} acknowledged webhooks lost, e.g. {lost[:5]}\n{self.trace_acks(lost)}"
        # 2. no duplicates
        for name, site in self.cluster.sites.items():
            seen = collections.Counter(d["customer_name"] for d in site.all("Customer")
                                       if UNIQUE_NAME.match(str(d.get("customer_name") or "")))
            dupes = {n: c for n, c in seen.items() if c > 1}
            assert not dupes, f"{phase}: documents created twice on {name}: {dupes}\n{self.trace(set(dupes))}"
            orders = {k: c for k, c in order_generations(site.all("Sales Order")).items() if c > 1}
            assert not orders, f"{phase}: orders created twice on {name}: {orders}"
        assert not double_mapped, f"{phase}: sync records with two documents on one site: {double_mapped[:5]}"
        # 3. the file is sound (SQLite); the server answers (PostgreSQL)
        if self.is_sqlite:
            result = integrity_check(db.reader_engine)
            assert result == "ok", f"{phase}: PRAGMA integrity_check → {result}"
        else:
            assert health.check_database_integrity(db).status == "ok", phase
        return {"acks": len(acks), "poster_acks": sum(a.source == "poster" for a in acks)}

    # ------------------------------------------------------------------ restore of an older backup

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "erpsync_tui", "--config", str(self.config_path), "--db",
                               str(self.db_path), *args], env=self.env, capture_output=True, text=True, timeout=60)

    def backup(self) -> Path:
        """An online backup while an engine runs (the operator's nightly job)."""
        path = self.tmp_path / f"backup-{len(self.events)}.db"
        done = self.cli("backup", str(path))
        assert done.returncode == 0, done.stderr
        self.events.append(f"backup {path.name}")
        return path

    def restore(self, backup: Path, poster: Poster, *running: subprocess.Popen[bytes]) -> frozenset[Ack]:
        """The runbook: stop every engine (here: SIGKILL), restore the older backup. Returns the acknowledgements
        made until the engines stopped: the restore takes their queue rows out of the database."""
        for proc in running:
            if proc.poll() is None:
                self.kill(proc)
        excused = frozenset(poster.acks() + self.site_acks())
        self.wiped = self.wiped | excused
        deadline = time.monotonic() + 10
        while engine_status(self.database()).mode != "stopped":  # a killed holder's lease lapses
            assert time.monotonic() < deadline, "the lease of killed engines did not lapse"
            time.sleep(0.1)
        done = self.cli("restore", str(backup), "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        self.events.append(f"restored {backup.name}")
        synced = self.cli("sync", "--json")  # the runbook's next step: pairs what the backup does not know
        assert synced.returncode in (0, 1), synced.stdout + synced.stderr  # 1: some documents went to the queue
        self.events.append(f"sync after restore: {synced.stdout.strip()[:300]}")
        return excused

    def still_named(self, ack: Ack) -> bool:
        """The site still holds a document of that doctype under the acknowledged name."""
        return any(d["name"] == ack.name for d in self.cluster[ack.site].all(ack.doctype))

    def trace_acks(self, acks: list[Ack]) -> str:
        """The story of lost acknowledgements: whether each document is still there, and what the log says."""
        names = {a.name for a in acks}
        with self.database().read() as session:
            lines = session.exec(select(SyncLog).where(col(SyncLog.name).in_(names)).order_by(col(SyncLog.id))).all()
        return "\n".join([*(f"{a} still named: {self.still_named(a)}" for a in acks),
                          *(f"{x.id} {x.ts} {x.site} {x.name} {x.outcome} {x.message[:160]}" for x in lines),
                          *self.events])

    def trace(self, customer_names: set[str]) -> str:
        """Where the documents of these customer names are, and what the log says of them (a failure's story)."""
        docs = [(site_name, d["name"], d.get("owner"), str(d.get("creation")), d["customer_name"])
                for site_name, site in self.cluster.sites.items() for d in site.all("Customer")
                if d.get("customer_name") in customer_names]
        names = {name for _, name, *_ in docs}
        with self.database().read() as session:
            lines = session.exec(select(SyncLog).where(col(SyncLog.name).in_(names)).order_by(col(SyncLog.id))).all()
        return "\n".join([*(str(d) for d in docs), *(f"{x.id} {x.ts} {x.site} {x.name} {x.outcome} {x.message[:160]}"
                                                       for x in lines), *self.events])

    # ------------------------------------------------------------------ the final drain

    def open_queue(self) -> list[QueueItem]:
        """Open items, except those still leased to a killed holder (see ORPHAN_NOTE)."""
        holder = engine_status(self.database()).holder
        with self.database().read() as session:
            items = session.exec(select(QueueItem).where(col(QueueItem.status).in_(OPEN_QUEUE))).all()
        self.orphans = [q for q in items if q.status == QueueStatus.IN_PROGRESS and q.lease_owner != holder]
        return [q for q in items if q not in self.orphans]

    def behind(self) -> list[str]:
        """(site, doctype) pairs whose incremental watermark is older than the newest document there."""
        with self.database().read() as session:
            marks = {(w.site, w.doctype): w.value for w in session.exec(
                select(Watermark).where(Watermark.kind == "incremental")).all()}
        lagging = []
        for name, site in self.cluster.sites.items():
            for doctype in DOCTYPES:
                newest = max((str(d["modified"]) for d in site.all(doctype)), default=None)
                mark = marks.get((name, doctype))
                if newest is not None and (mark is None or str(mark) < newest):
                    lagging.append(f"{name}/{doctype}: {mark} < {newest}")
        return lagging

    def drain(self, proc: subprocess.Popen[bytes], stall: float = 60.0, limit: float = 900.0) -> None:
        """Until the queue is empty and incremental sync has seen every document, twice in a row.

        Convergence is the guarantee, not its speed: after many kills the backlog is large, so this waits as
        long as the backlog keeps shrinking, and fails after `stall` seconds without progress (or `limit`).
        """
        started = time.monotonic()
        calm, best, last_progress = 0, None, started
        while calm < 2:
            if proc.poll() is not None:
                raise AssertionError(f"final serve exited with {proc.returncode}:\n{self.output(proc)}")
            pending, lagging = self.open_queue(), self.behind()
            calm = calm + 1 if not pending and not lagging else 0
            size = len(pending) + len(lagging)
            if best is None or size < best:
                best, last_progress = size, time.monotonic()
            now = time.monotonic()
            if now - last_progress > stall or now - started > limit:
                proc.send_signal(signal.SIGUSR1)  # serve prints every thread's stack: where is it stuck?
                time.sleep(1.0)
                raise AssertionError(f"{self.output(proc, 16000)}\n"
                                     f"not drained after {now - started:.0f}s ({now - last_progress:.0f}s without "
                                     f"progress): {len(pending)} open items "
                                     f"{[(q.kind, q.site, q.doctype, q.name, q.status) for q in pending[:5]]}; "
                                     f"watermarks behind: {lagging}")
            time.sleep(1.2)
        self.events.append(f"drained in {time.monotonic() - started:.1f}s")


def reconcile_all(cluster: SimCluster, db: Database) -> dict[str, Any]:
    sites = {name: {"url": site.url, "timeout_seconds": 5.0, "requests_per_second": 1000}
             for name, site in cluster.sites.items()}
    config = AppConfig.model_validate({"sites": sites, "sync": {"doctypes": DOCTYPES}})

    async def run() -> dict[str, Any]:
        connectors = {name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret)
                      for name, site in cluster.sites.items()}
        try:
            engine = SyncEngine(config, db, connectors)
            return {doctype: await reconcile(engine, doctype) for doctype in DOCTYPES}
        finally:
            for connector in connectors.values():
                await connector.aclose()

    return asyncio.run(run())


def run_crash_harness(tmp_path: Path, kills: int, seed: int, url: str = "", *,
                      restore_older_backup: bool = False) -> None:
    """Run the harness; every guarantee is asserted after every restart and at the end.

    `restore_older_backup`: a backup is taken after a quarter of the kills, and at half of them every engine is
    stopped and that backup restored (the state database then knows nothing of what was created since) — still
    no document may be created twice.
    """
    rng = random.Random(seed)
    print(f"crash harness: seed={seed} kills={kills} on {url.split(':', 1)[0] or 'sqlite'} "
          f"(replay with CRASH_SEED={seed})")
    started = time.monotonic()
    with SimCluster(list(SITES), seed=seed % 1000, webhook_retry_delays=(0.2, 0.5)) as cluster:
        for site in cluster.sites.values():
            site.seed(6)
        harness = Harness(cluster, tmp_path, seed, url=url)
        for name, site in cluster.sites.items():
            site.add_webhook(f"http://127.0.0.1:{harness.port}/webhook/{name}", SECRET)
        poster = Poster(cluster, harness.port, seed)
        try:
            current = harness.spawn()
            harness.wait_up(current, limit=60)
            # A quarter of traffic is lifecycle: orders submitted, cancelled, amended; customers renamed (no
            # webhook) or deleted with the webhook lost — all must converge through the kills too.
            cluster.start_traffic(8, conflict_share=0.1, hostile_share=0.1, lifecycle_share=0.25)
            poster.start()
            takeovers = []
            backup: Path | None = None
            excused: frozenset[Ack] = frozenset()
            for index in range(kills):
                if restore_older_backup and index == kills // 4:
                    backup = harness.backup()
                successor = harness.spawn()  # waits for the lease while `current` holds it
                delay = rng.uniform(0.2, 1.5)
                time.sleep(delay)
                if restore_older_backup and index == kills // 2 and backup is not None:
                    excused = harness.restore(backup, poster, current, successor)
                    successor = harness.spawn()
                    phase = f"restore of {backup.name} at kill {index + 1}/{kills}"
                else:
                    harness.kill(current)
                    phase = f"kill {index + 1}/{kills} (after {delay:.2f}s)"
                takeovers.append(harness.wait_up(successor))
                harness.check(phase, poster, excused)
                current = successor
            poster.stop_event.set()
            poster.join(10)
            cluster.stop_traffic()
            time.sleep(1.5)  # the sites' last webhook retries land
            harness.drain(current)
            counts = harness.check("final", poster)
            with harness.database().read() as session:
                mapped = {(s.site, s.doctype, s.name) for s in session.exec(select(SyncName)).all()}
            unsynced = [key for key in ((q.site, q.doctype, q.name) for q in harness.orphans) if key not in mapped]
            assert not unsynced, f"orphaned in_progress items whose documents never synced: {unsynced[:5]}"
            current.send_signal(signal.SIGTERM)
            assert current.wait(30) == 0, harness.output(current)
            with harness.database().read() as session:
                open_conflicts = session.exec(select(func.count()).select_from(Conflict).where(
                    col(Conflict.status).in_((ConflictStatus.OPEN, ConflictStatus.RESOLVING)))).one()
                dead = session.exec(select(QueueItem).where(QueueItem.status == QueueStatus.DEAD)).all()
            reports = reconcile_all(cluster, harness.database())
            differences = {d: [(x.kind, x.names, x.fields) for x in r.differences][:5]
                           for d, r in reports.items() if r.differences}
            assert not differences, (f"sites did not converge ({open_conflicts} open conflicts, {len(dead)} dead "
                                     f"items {[(q.doctype, q.name, q.last_error) for q in dead[:3]]}): {differences}")
            assert harness.kills == kills + int(restore_older_backup)  # the restore stops the waiting successor too
            lifecycle = {op: cluster.traffic_stats.get(op, 0) for op in
                         ("order", "submit", "cancel", "amend", "rename", "lost_delete")}
            assert sum(lifecycle.values()) > 0 and lifecycle["submit"] > 0 and lifecycle["rename"] > 0, lifecycle
            assert counts["poster_acks"] > 0 and counts["acks"] > counts["poster_acks"], counts
            print(f"crash harness: {kills} kills in {time.monotonic() - started:.1f}s, "
                  f"takeover avg {sum(takeovers) / max(len(takeovers), 1):.2f}s max {max(takeovers, default=0):.2f}s, "
                  f"{counts}, {len(harness.orphans)} items orphaned in_progress by kills, "
                  f"{harness.events[-1]}, traffic {cluster.traffic_stats}, poster {dict(poster.stats)}, "
                  f"counts {({d: r.counts for d, r in reports.items()})}")
        except AssertionError as exc:
            raise AssertionError(f"[seed={seed}, kills done={harness.kills}; replay with "
                                 f"CRASH_SEED={seed}] {exc}") from exc
        finally:
            poster.stop_event.set()
            cluster.stop_traffic()
            harness.stop_all()


def _seed(default: int | None) -> int:
    value = os.environ.get("CRASH_SEED")
    if value:
        return int(value)
    return default if default is not None else random.SystemRandom().randrange(1, 10**9)


@pytest.mark.backends
@pytest.mark.timeout(240)
def test_serve_survives_random_sigkills(tmp_path: Path, db_url: str) -> None:
    run_crash_harness(tmp_path, kills=int(os.environ.get("CRASH_KILLS", "20")), seed=_seed(20261123), url=db_url)


@pytest.mark.timeout(240)
def test_restoring_an_older_backup_mid_run_makes_no_duplicate(tmp_path: Path) -> None:
    """Issue 13: the runbook's restore of an older backup, mid-run under load, between SIGKILLs."""
    run_crash_harness(tmp_path, kills=int(os.environ.get("CRASH_KILLS_RESTORE", "8")), seed=_seed(20261128),
                      restore_older_backup=True)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_serve_survives_100_random_sigkills(tmp_path: Path) -> None:
    run_crash_harness(tmp_path, kills=100, seed=_seed(None))

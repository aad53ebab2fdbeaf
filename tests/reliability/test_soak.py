"""Fault soak: a running EngineService under live traffic while the simulator cycles through outages and faults.

Proves the service never crashes, circuits open during an outage and close after, and nothing is silently
dropped: at the end every document is synced, in an open conflict, or its queue item is dead with a reason.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.service import EngineService, engine_status
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, open_database
from erpsync_tui.store.models import Conflict, ConflictStatus, QueueItem, QueueStatus, SyncLog
from erpsync_tui.webhooks import create_app, serve_receiver

from .duplicates import order_generations

SECRET = "soak-webhook-secret-0123456789"
DOCTYPES = ["Customer", "Item", "Sales Order"]
LIFECYCLE_OPS = ("order", "submit", "cancel", "amend", "rename", "lost_delete")


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=11, webhook_retry_delays=(0.2, 0.5)) as sim:
        yield sim


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    yield database
    database.dispose()


def soak_config(cluster: SimCluster) -> AppConfig:
    sites = {
        name: {"url": site.url, "timeout_seconds": 1.0, "requests_per_second": 500, "max_concurrency": 8,
               "circuit_failure_threshold": 3, "circuit_reset_seconds": 0.5}
        for name, site in cluster.sites.items()
    }
    return AppConfig.model_validate({
        "sites": sites,
        "sync": {"doctypes": DOCTYPES, "batch_size": 50,
                 "retry": {"max_attempts": 8, "backoff_base_seconds": 0.05, "backoff_max_seconds": 1.0}},
        "scheduler": {"queue_interval_seconds": 0.2, "incremental_sync_interval_seconds": 1.0,
                      "health_interval_seconds": 600},
        "webhooks": {"port": 0},
    })


def make_service(cluster: SimCluster, db: Database) -> EngineService:
    config = soak_config(cluster)
    connectors = {
        name: FrappeConnector(name, config.sites[name], site.api_key, site.api_secret, max_retries=2,
                              backoff_base=0.02, backoff_max=0.5)
        for name, site in cluster.sites.items()
    }

    async def start_receiver(service: EngineService) -> Any:
        app = create_app(service.config, db, webhook_secret=SECRET, on_stored=service.wake)
        return await serve_receiver(app, "127.0.0.1", 0)

    return EngineService(config, db, connectors, owner="soak-engine", start_receiver=start_receiver, lease_ttl=1.5)


def assert_alive(service: EngineService, phase: str) -> None:
    assert service.state == "running", f"{phase}: service state {service.state}"
    for task in service._tasks:
        assert not task.done(), f"{phase}: task {task.get_name()} ended: {task}"
    assert engine_status(service.db).holder == service.owner, f"{phase}: lease lost"


async def wait_for(predicate: Any, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {limit}s: {what}")
        await asyncio.sleep(0.1)


async def sample_circuits(service: EngineService, seconds: float, seen: dict[str, set[str]]) -> None:
    """Sample both the connectors' circuits and what the heartbeat publishes in the lease."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for site, connector in service.connectors.items():
            seen.setdefault(site, set()).add(connector.circuit_state)
        for site, state in (await asyncio.to_thread(engine_status, service.db)).circuits.items():
            seen.setdefault(f"lease:{site}", set()).add(state)
        await asyncio.sleep(0.1)


async def probe(service: EngineService, cluster: SimCluster, phase: str, serial: int) -> None:
    """After a phase: a fresh insert on cloud (webhook on) must reach local — the service still processes."""
    doc = cluster["cloud"].insert("Customer", {"customer_name": f"Probe {serial} after {phase}",
                                               "customer_type": "Company", "customer_group": "Commercial"})

    def arrived() -> bool:
        local = service.engine.state.translate_name("Customer", "cloud", doc["name"], "local")
        return local is not None and cluster["local"].get("Customer", local) is not None

    try:
        await wait_for(arrived, 20, f"probe doc after {phase} reached local")
    except AssertionError as exc:  # a stuck engine: say where every task waits
        raise AssertionError(f"{exc}\n{task_stacks()}") from None
    assert_alive(service, phase)


def task_stacks() -> str:
    """Where each asyncio task of this loop is waiting: the story of a hang."""
    lines = []
    for task in asyncio.all_tasks():
        chain, step = [], task.get_coro()
        while step is not None and len(chain) < 30:  # the await chain, outermost first
            frame = getattr(step, "cr_frame", None) or getattr(step, "gi_frame", None)
            if frame is not None:
                chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
            step = getattr(step, "cr_await", None) or getattr(step, "gi_yieldfrom", None)
        lines.append(f"  {task.get_name()}: {' -> '.join(chain)}")
    return "\n".join(sorted(lines))


def queue_quiet(db: Database) -> bool:
    with db.read() as s:
        busy = s.exec(select(QueueItem).where(col(QueueItem.status).in_(
            [QueueStatus.PENDING, QueueStatus.FAILED, QueueStatus.IN_PROGRESS]))).first()
    return busy is None


async def run_soak(cluster: SimCluster, db: Database, *, phase_seconds: float, rate: float, rounds: int) -> None:
    # A shared starting point (same names on both sites) so the traffic's two-sided edits race on real pairs;
    # seeded before the engine starts, so its catch-up sync pairs them up.
    for site in cluster:
        site.seed(6, seed=3)
    service = make_service(cluster, db)
    await service.start()
    receiver_url = service.receiver.url
    for name, site in cluster.sites.items():
        site.add_webhook(f"{receiver_url}/webhook/{name}", SECRET)
    seen: dict[str, set[str]] = {}
    try:
        await wait_for(lambda: queue_quiet(db), 30, "initial catch-up")
        cluster.start_traffic(rate, conflict_share=0.3, hostile_share=0.2, lifecycle_share=0.3)
        serial = 0
        outages = [("local", {"drop": True}), ("cloud", {"hang": True})]
        for round_no in range(rounds):
            down, faults = outages[round_no % len(outages)]
            phases: list[tuple[str, dict[str, dict[str, Any]]]] = [
                (f"outage {down} {next(iter(faults))}", {down: faults}),
                ("429 storm", {"cloud": {"rate_limit_always": True, "retry_after": 1}}),
                ("500 bursts", {"cloud": {"error_rate": 0.5}, "local": {"error_rate": 0.5}}),
                ("slow", {"cloud": {"latency_ms": 200, "jitter_ms": 50}, "local": {"latency_ms": 200}}),
                ("revoked", {"local": {"revoked": True}}),
            ]
            for phase, per_site in phases:
                for name, changes in per_site.items():
                    cluster[name].set_faults(**changes)
                outage_seen: dict[str, set[str]] = {}
                await sample_circuits(service, phase_seconds, outage_seen)
                if phase.startswith("outage"):
                    assert "open" in outage_seen[down], f"{phase}: circuit never opened: {outage_seen}"
                    assert "open" in outage_seen[f"lease:{down}"], f"{phase}: engine_status never showed it"
                for site in cluster:
                    site.clear_faults()
                if phase.startswith("outage"):
                    await wait_for(lambda d=down: service.connectors[d].circuit_state == "closed", 10,
                                   f"{down} circuit closed after {phase}")
                    await wait_for(lambda d=down: engine_status(db).circuits.get(d) == "closed", 5,
                                   f"engine_status shows {down} closed")
                for key, states in outage_seen.items():
                    seen.setdefault(key, set()).update(states)
                assert_alive(service, phase)
                serial += 1
                await probe(service, cluster, phase, serial)
        cluster.stop_traffic()
        stats = cluster.traffic_stats
        assert stats.get("conflicts", 0) > 0 and stats.get("hostile", 0) > 0, stats
        assert all(stats.get(op, 0) > 0 for op in LIFECYCLE_OPS), stats  # submits, cancels, amends, renames, …
        # Let webhooks land and the incremental net sweep, then the queue drains.
        await asyncio.sleep(2.5)
        await wait_for(lambda: queue_quiet(db), 60, "queue drained")
        await asyncio.sleep(2.5)  # one more incremental pass after the last write
        await wait_for(lambda: queue_quiet(db), 30, "queue drained again")
        assert_alive(service, "end")
        await assert_nothing_dropped(service, cluster, db)
    finally:
        cluster.stop_traffic()
        for site in cluster:
            site.clear_faults()
            site.clear_webhooks()
        await service.stop()


def story(db: Database, differences: list[Any]) -> str:
    """What the engine logged and queued for the documents of these differences (a failure's story)."""
    names = {name for diff in differences for name in diff.names.values()}
    with db.read() as s:
        logs = s.exec(select(SyncLog).where(col(SyncLog.name).in_(names)).order_by(col(SyncLog.id))).all()
        items = s.exec(select(QueueItem).where(col(QueueItem.name).in_(names)).order_by(col(QueueItem.id))).all()
    return "\n".join([*(f"log {x.id} {x.ts} {x.site} {x.name} {x.outcome} {x.message[:200]}" for x in logs),
                      *(f"queue {q.id} {q.site} {q.name} {q.status} {q.attempts} {q.last_error}" for q in items)])


async def assert_nothing_dropped(service: EngineService, cluster: SimCluster, db: Database) -> None:
    engine = service.engine
    with db.read() as s:
        dead = s.exec(select(QueueItem).where(QueueItem.status == QueueStatus.DEAD)).all()
        conflicts = s.exec(select(Conflict).where(Conflict.status == ConflictStatus.OPEN)).all()
    for item in dead:
        assert item.last_error and item.error_code, f"dead item without a reason: {item}"
    explained: set[tuple[str, str, str]] = set()
    for item in dead:
        explained.add((item.doctype or "", item.site or "", item.name or ""))
    for conflict in conflicts:
        for site, name in conflict.names.items():
            explained.add((conflict.doctype, site, name))
    # A dead or conflicted document also explains its counterpart.
    for doctype, site, name in list(explained):
        if site in engine.pair:
            other = engine.other(site)
            counterpart = await asyncio.to_thread(engine.state.translate_name, doctype, site, name, other)
            if counterpart:
                explained.add((doctype, other, counterpart))
    # No duplicate: each customer traffic made (a unique serial in its name) exists at most once per site, and
    # so does each order (its `terms`) in each generation of amendments.
    for site in cluster:
        names = collections.Counter(str(d.get("customer_name")) for d in site.all("Customer")
                                    if str(d.get("customer_name") or "").startswith("Traffic Customer"))
        assert not {n: c for n, c in names.items() if c > 1}, f"documents created twice on {site.name}"
        orders = order_generations(site.all("Sales Order"))
        assert not {k: c for k, c in orders.items() if c > 1}, f"orders created twice on {site.name}"
    unexplained = []
    total_docs = 0
    for doctype in DOCTYPES:
        report = await reconcile(engine, doctype)
        total_docs += sum(report.counts.values())
        assert report.counts["cloud"] > 0 and report.counts["local"] > 0
        for diff in report.differences:
            if not any((doctype, site, name) in explained for site, name in diff.names.items()):
                unexplained.append(diff)
    assert unexplained == [], f"silently dropped / diverged: {unexplained}\n{story(db, unexplained)}"
    # Few, and each explained: dead items and open conflicts stay a small share of what the soak touched.
    assert len(dead) + len(conflicts) <= max(5, total_docs // 10), (
        f"{len(dead)} dead, {len(conflicts)} open conflicts of {total_docs} documents: "
        f"{[(i.doctype, i.site, i.name, i.error_code, i.last_error) for i in dead]}")


@pytest.mark.timeout(150)
async def test_soak_ci(cluster: SimCluster, db: Database) -> None:
    await run_soak(cluster, db, phase_seconds=3.0, rate=15, rounds=1)


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_soak_long(cluster: SimCluster, db: Database) -> None:
    await run_soak(cluster, db, phase_seconds=8.0, rate=25, rounds=6)

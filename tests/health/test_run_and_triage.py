"""run_checks end to end (concurrency, persistence, isolation) and the triage walk."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlmodel import select

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine import health
from erpsync_tui.errors import quick_fix
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, queries
from erpsync_tui.store.models import EngineLease, HealthResult, QueueItem, QueueStatus, utcnow

from .conftest import credentials, free_port, make_config


def live_lease(**info: Any) -> EngineLease:
    return EngineLease(holder="engine-1", expires_at=utcnow() + timedelta(seconds=60), info=info)


def add(db: Database, *rows: Any) -> None:
    with db.write() as session:
        session.add_all(rows)


def by_key(results: list[health.CheckResult]) -> dict[tuple[str, str], health.CheckResult]:
    return {(r.check, r.target): r for r in results}


@pytest.fixture
async def healthy(sim: SimCluster, db: Database) -> AsyncIterator[AppConfig]:
    """A config whose every check can pass: a live engine lease and something listening on the receiver port."""
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    add(db, live_lease())
    yield make_config(sim, webhooks={"port": int(server.sockets[0].getsockname()[1])})
    server.close()
    await server.wait_closed()


# ============================================================================================ run_checks


@pytest.mark.backends
async def test_every_check_passes_and_is_stored(
    healthy: AppConfig, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    results = await health.run_checks(healthy, db, connectors)
    assert [r for r in results if r.status != "ok"] == []
    # Disk free is SQLite's; PostgreSQL's counterparts are the database's size and its long transactions.
    other_backend = {"database.size", "database.transactions"} if db.is_sqlite else {"database.disk_free"}
    assert {r.check for r in results} == set(health.CHECK_STEPS) - other_backend
    assert {r.step for r in results} == set(health.TRIAGE_STEPS)
    store_engine_and_sites = 15 if db.is_sqlite else 16  # PostgreSQL: size and transactions for disk free
    assert len(by_key(results)) == len(results) == 6 * 2 + store_engine_and_sites  # six per site
    with db.read() as session:
        stored = queries.health_results(session)
    assert {(r.check, r.target, r.status, r.value) for r in stored} == {
        (r.check, r.target, r.status, r.value) for r in results
    }
    verdict = health.triage(results)
    assert (verdict.ok, verdict.step) == (True, None)
    assert verdict.summary == f"All {len(results)} checks pass."


async def test_rerun_updates_rows_in_place(
    healthy: AppConfig, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    await health.run_checks(healthy, db, connectors)
    with db.read() as session:
        first = {(r.check, r.target): r for r in session.exec(select(HealthResult)).all()}
    add(db, *[QueueItem(status=QueueStatus.DEAD, name=f"D{i}") for i in range(3)])
    await health.run_checks(healthy, db, connectors)
    with db.read() as session:
        second = {(r.check, r.target): r for r in session.exec(select(HealthResult)).all()}
    assert second.keys() == first.keys()
    assert all(second[k].id == first[k].id for k in first)  # the same rows, updated
    assert all(second[k].checked_at > first[k].checked_at for k in first)
    dead = second[("queue.dead", "queue")]
    assert (dead.status, dead.value, dead.error_code, dead.quick_fix) == ("warn", "3 items", "ERP010",
                                                                         quick_fix("ERP010"))


async def test_full_run_drops_rows_of_checks_that_no_longer_apply(
    healthy: AppConfig, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    add(db, HealthResult(check="site.reachable", target="removed_site"), HealthResult(check="custom.probe"))
    await health.run_checks(healthy, db, connectors)
    with db.read() as session:
        keys = {(r.check, r.target) for r in session.exec(select(HealthResult)).all()}
    assert ("site.reachable", "removed_site") not in keys
    assert ("custom.probe", "") in keys  # not ours: left alone


async def test_only_runs_the_named_checks_or_families(
    config: AppConfig, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    reach = await health.run_checks(config, db, connectors, only={"site.reachable"})
    assert sorted((r.check, r.target) for r in reach) == [("site.reachable", "cloud"), ("site.reachable", "local")]
    queue = await health.run_checks(config, db, connectors, only={"queue"})
    assert {r.check for r in queue} == {"queue.backlog", "queue.stuck", "queue.dead", "queue.failed"}
    with db.read() as session:
        assert len(session.exec(select(HealthResult)).all()) == 6  # a partial run deletes nothing


async def test_temporary_connectors_from_credentials_are_closed(
    sim: SimCluster, healthy: AppConfig, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    original = FrappeConnector.aclose

    async def spy(self: FrappeConnector) -> None:
        closed.append(self.site)
        await original(self)

    monkeypatch.setattr(FrappeConnector, "aclose", spy)
    results = by_key(await health.run_checks(healthy, db, None, credentials=credentials(sim)))
    assert results[("site.authenticated", "cloud")].status == "ok"
    assert results[("site.authenticated", "local")].status == "ok"
    assert sorted(closed) == ["cloud", "local"]


async def test_without_connectors_circuits_come_from_the_engine_lease(sim: SimCluster, db: Database) -> None:
    add(db, live_lease(circuits={"cloud": "open", "local": "half_open"}))
    results = by_key(await health.run_checks(make_config(sim), db, None, credentials={}, only={"site.circuit"}))
    assert results[("site.circuit", "cloud")].status == "fail"
    assert results[("site.circuit", "local")].status == "warn"


async def test_live_connector_circuit_is_reported(
    config: AppConfig, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    for _ in range(connectors["local"].circuit.failure_threshold):
        connectors["local"].circuit.record_failure()
    results = by_key(await health.run_checks(config, db, connectors, only={"site.circuit"}))
    assert results[("site.circuit", "local")].status == "fail"
    assert "consecutive failures" in results[("site.circuit", "local")].detail
    assert results[("site.circuit", "cloud")].status == "ok"


async def test_a_crashing_check_fails_alone(
    healthy: AppConfig, db: Database, connectors: dict[str, FrappeConnector], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(_db: Database) -> health.CheckResult:
        raise RuntimeError("boom")

    monkeypatch.setattr(health.run, "check_dead", explode)  # where run_checks looks it up
    results = by_key(await health.run_checks(healthy, db, connectors))
    crashed = results[("queue.dead", "queue")]
    assert (crashed.status, crashed.step) == ("fail", "data_correct")
    assert "RuntimeError: boom" in crashed.detail
    assert len(results) == 27 and sum(r.status != "ok" for r in results.values()) == 1


async def test_a_read_only_database_still_reports(
    healthy: AppConfig, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    @event.listens_for(db.writer_engine, "connect")
    def _read_only(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    db.writer_engine.dispose()
    results = await health.run_checks(healthy, db, connectors)  # storing fails; the run does not
    verdict = health.triage(results)
    assert verdict.step == "sync_running"
    assert [(r.check, r.value) for r in verdict.failing] == [("database.writable", "not writable")]


async def test_checks_run_concurrently(sim: SimCluster, db: Database) -> None:
    # Both sites hang: run serially, the two reachability probes and two whoamis would take 4 × 0.5 s.
    for site in sim:
        site.set_faults(hang=True)
    config = make_config(sim, sites={n: {"timeout_seconds": 0.5} for n in sim.sites})
    started = asyncio.get_running_loop().time()
    results = await health.run_checks(config, db, None, credentials=credentials(sim))
    assert asyncio.get_running_loop().time() - started < 1.8
    assert {r.error_code for r in results if r.check == "site.reachable"} == {"ERP007"}


# ============================================================================================ triage


async def test_triage_stops_at_authentication_when_credentials_are_revoked(
    sim: SimCluster, db: Database, connectors: dict[str, FrappeConnector]
) -> None:
    sim["cloud"].set_faults(revoked=True)
    add(db, *[QueueItem(status=QueueStatus.PENDING, name=f"P{i}") for i in range(5)])
    config = make_config(sim, alerts={"backlog_max": 2})  # no engine, no receiver, a backlog: later steps fail too
    results = await health.run_checks(config, db, connectors)
    failing_steps = {r.step for r in results if r.status == "fail"}
    assert {"authentication", "sync_running", "performance"} <= failing_steps
    verdict = health.triage(results)
    assert (verdict.ok, verdict.step, verdict.question) == (False, "authentication", "Do the credentials work?")
    assert [(r.check, r.target, r.error_code) for r in verdict.failing] == [("site.authenticated", "cloud", "ERP002")]
    assert len(verdict.fixes) == 1 and verdict.fixes[0].startswith("ERP002: ")
    assert "secrets set cloud" in verdict.fixes[0] and "<site>" not in verdict.fixes[0]  # the site's own command
    assert "Step 2 of 5, authentication" in verdict.summary and "ERP002" in verdict.summary


async def test_triage_stops_at_connection_before_anything_else(sim: SimCluster, db: Database) -> None:
    config = make_config(sim, sites={"local": {"url": f"http://127.0.0.1:{free_port()}"}})
    results = await health.run_checks(config, db, None, credentials=credentials(sim))
    verdict = health.triage(results)
    assert verdict.step == "connection"
    assert {(r.check, r.target) for r in verdict.failing} == {("site.reachable", "local")}
    assert verdict.fixes[0].startswith("ERP001: ")
    # The authentication check of the unreachable site fails too, but the walk never gets there.
    assert by_key(results)[("site.authenticated", "local")].status == "fail"


def test_triage_with_warnings_only_is_ok_and_lists_them() -> None:
    results = [
        health.CheckResult("site.reachable", "cloud", "ok", "3 ms", step="connection"),
        health.CheckResult("queue.dead", "queue", "warn", "2 items", error_code="ERP010",
                           quick_fix=quick_fix("ERP010"), step="data_correct"),
    ]
    verdict = health.triage(results)
    assert (verdict.ok, verdict.step, verdict.failing) == (True, None, ())
    assert [r.check for r in verdict.warnings] == ["queue.dead"]
    assert "queue.dead queue (2 items)" in verdict.summary


def test_results_as_json_round_trips() -> None:
    result = health.CheckResult("site.authenticated", "cloud", "fail", "rejected", "401", "ERP002",
                                quick_fix("ERP002"), "authentication")
    rows = json.loads(json.dumps(health.results_as_json([result])))
    assert rows == [{"check": "site.authenticated", "target": "cloud", "status": "fail", "value": "rejected",
                     "detail": "401", "error_code": "ERP002", "quick_fix": quick_fix("ERP002"),
                     "step": "authentication"}]


# ============================================================================================ re-checking failures


async def test_a_restored_key_is_blamed_no_longer_after_the_recheck(
    healthy: AppConfig, db: Database, sim: SimCluster
) -> None:
    """The triage blames an error only while it is happening: the engine re-runs the failing checks (every
    RECHECK_SECONDS), so the stored failure of a revoked key is replaced once the key works again (and the
    connector's circuit, opened by the refusals, lets a request through: circuit_reset_seconds)."""
    import dataclasses

    from erpsync_tui.store.control import engine_status

    config = make_config(sim, sites={n: {"circuit_reset_seconds": 0.2} for n in sim.sites},
                         webhooks={"port": healthy.webhooks.port})
    connectors = {n: FrappeConnector(n, config.sites[n], s.api_key, s.api_secret, max_retries=0)
                  for n, s in sim.sites.items()}
    keyring = sim["local"].keyring
    original = keyring.get(sim["local"].api_key)
    assert original is not None
    try:
        keyring.add(dataclasses.replace(original, secret="revoked"))  # the sync user's keys were regenerated
        try:
            await health.run_checks(config, db, connectors)
            assert health.failing_checks(db) == {"site.authenticated"}
            with db.read() as session:
                blamed = health.triage([health.CheckResult(r.check, r.target, r.status, r.value, r.detail,
                                                           r.error_code, r.quick_fix, health.CHECK_STEPS[r.check])
                                        for r in queries.health_results(session)])
            assert blamed.step == "authentication" and "ERP002" in blamed.summary
            again = await health.recheck_failing(config, db, connectors)  # still revoked: confirmed
            assert {(r.check, r.target, r.status) for r in again} == {("site.authenticated", "cloud", "ok"),
                                                                      ("site.authenticated", "local", "fail")}
        finally:
            keyring.add(original)  # restored
        await asyncio.sleep(0.3)  # the circuit the refusals opened half-opens
        rechecked = await health.recheck_failing(config, db, connectors)
        assert {(r.check, r.target, r.status) for r in rechecked} == {("site.authenticated", "cloud", "ok"),
                                                                      ("site.authenticated", "local", "ok")}
        assert health.failing_checks(db) == set()
        with db.read() as session:
            assert all(r.status == "ok" for r in queries.health_results(session))
        assert await health.recheck_failing(config, db, connectors) == []  # nothing fails: nothing is run
        assert engine_status(db).mode != "stopped"
    finally:
        for connector in connectors.values():
            await connector.aclose()


async def test_the_engine_schedules_the_recheck(healthy: AppConfig, db: Database, sim: SimCluster) -> None:
    from erpsync_tui.engine.service import EngineService

    service = EngineService(healthy, db, {})
    jobs = {name: seconds for name, _job, seconds in service._jobs()}
    assert jobs["health_recheck"] == min(health.RECHECK_SECONDS, healthy.scheduler.health_interval_seconds)

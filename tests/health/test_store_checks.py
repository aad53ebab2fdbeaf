"""Checks on the state database, the queue, the sync log, the engine lease and the webhook receiver."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from erpsync_tui.config import AppConfig
from erpsync_tui.engine import health
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, open_database
from erpsync_tui.store.models import Conflict, EngineLease, QueueItem, QueueStatus, SyncLog, utcnow

from .conftest import free_port, make_config


def add(db: Database, *rows: Any) -> None:
    with db.write() as session:
        session.add_all(rows)


def queued(status: QueueStatus, n: int = 1, **fields: Any) -> list[QueueItem]:
    return [QueueItem(status=status, doctype="Customer", name=f"C-{status}-{i}", **fields) for i in range(n)]


# ============================================================================================ database


def test_database_writable_ok(db: Database) -> None:
    result = health.check_database_writable(db)
    assert (result.status, result.step, result.target) == ("ok", "sync_running", "database")
    assert result.value.endswith(" ms")


def test_database_not_writable(db: Database) -> None:
    # Tests run as root, which ignores file modes, so a read-only database is simulated with SQLite's own
    # switch: every new writer connection gets PRAGMA query_only=ON and refuses writes like a read-only file.
    @event.listens_for(db.writer_engine, "connect")
    def _read_only(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only = ON")

    db.writer_engine.dispose()
    result = health.check_database_writable(db)
    assert (result.status, result.value, result.error_code) == ("fail", "not writable", "ERP010")
    assert "readonly" in result.detail and "permissions" in result.quick_fix


def test_quick_check_ok(db: Database) -> None:
    result = health.check_database_integrity(db)
    assert (result.status, result.value) == ("ok", "ok")
    assert "quick_check" in result.detail


def corrupted_database(tmp_path: Path) -> Database:
    """A real state file with damaged b-tree pages (the header intact, so SQLite opens it and then complains)."""
    path = tmp_path / "corrupt.db"
    db = open_database(f"sqlite:///{path}")
    add(db, *[SyncLog(message="x" * 200, outcome="updated") for _ in range(1500)])
    db.dispose()
    plain = sqlite3.connect(path)  # fold the WAL back in so the damage below hits the only copy
    plain.execute("PRAGMA journal_mode = DELETE")
    plain.close()
    data = bytearray(path.read_bytes())
    for page_start in range(4096 * 3, len(data), 4096 * 2):
        data[page_start + 100 : page_start + 300] = b"\xa5" * 200
    path.write_bytes(bytes(data))
    return Database(f"sqlite:///{path}")  # not open(): that would refuse the file before the check sees it


def test_quick_check_on_a_corrupted_file(tmp_path: Path) -> None:
    db = corrupted_database(tmp_path)
    try:
        result = health.check_database_integrity(db)
    finally:
        db.dispose()
    assert (result.status, result.error_code) == ("fail", "ERP010")
    assert result.value == "corrupt"  # SQLite opens it; quick_check reports the damage
    assert "backup" in result.quick_fix
    assert len(result.detail) < 1000  # quick_check's thousands of lines are clipped


def test_quick_check_on_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is no database " * 500)
    db = Database(f"sqlite:///{path}")
    try:
        result = health.check_database_integrity(db)
    finally:
        db.dispose()
    assert (result.status, result.value) == ("fail", "unreadable")
    assert "corrupt" in result.quick_fix


def test_free_disk(tmp_path: Path) -> None:
    ok = health.check_disk_free(tmp_path, 1)
    assert (ok.status, ok.step) == ("ok", "sync_running")
    assert ok.value.endswith("MB free")
    low = health.check_disk_free(tmp_path, 10**12)  # a threshold no disk can meet
    assert (low.status, low.error_code) == ("fail", "ERP010")
    assert "alerts.min_free_disk_mb" in low.detail


# ============================================================================================ engine lease


def test_engine_running_with_a_live_lease(db: Database) -> None:
    add(db, EngineLease(holder="engine-1", hostname="erp-host", pid=42, state="running",
                        expires_at=utcnow() + timedelta(seconds=30)))
    result = health.check_engine_running(db)
    assert (result.status, result.value, result.step) == ("ok", "running", "sync_running")
    assert "engine-1" in result.detail


def test_a_paused_engine_fails_its_check(db: Database) -> None:
    """Paused means nothing syncs: doctor must not say "all checks pass" (issue 15)."""
    add(db, EngineLease(holder="engine-1", hostname="erp-host", pid=42, state="paused",
                        expires_at=utcnow() + timedelta(seconds=30)))
    result = health.check_engine_running(db)
    assert (result.status, result.value, result.step, result.error_code) == ("fail", "paused", "sync_running",
                                                                             "ERP010")
    assert "erpsync-tui resume" in result.quick_fix


def test_engine_not_running_without_a_lease_or_with_an_expired_one(db: Database) -> None:
    assert health.check_engine_running(db).status == "fail"
    add(db, EngineLease(holder="engine-1", expires_at=utcnow() - timedelta(seconds=1)))
    result = health.check_engine_running(db)
    assert (result.status, result.value, result.error_code) == ("fail", "stopped", "ERP010")
    assert "no engine holds the lease" in result.detail and "erpsync-tui serve" in result.quick_fix


# ============================================================================================ queue


def test_backlog_over_the_limit(db: Database) -> None:
    add(db, *queued(QueueStatus.PENDING, 2), *queued(QueueStatus.FAILED, 1), *queued(QueueStatus.DONE, 5))
    ok = health.check_backlog(db, 3)
    assert (ok.status, ok.value, ok.step) == ("ok", "3 items", "performance")
    add(db, *queued(QueueStatus.PENDING, 1, kind="webhook"))
    over = health.check_backlog(db, 3)
    assert (over.status, over.value, over.error_code) == ("fail", "4 items", "ERP010")
    assert "3 pending, 1 waiting to retry" in over.detail


def test_stuck_items(db: Database) -> None:
    add(db, *queued(QueueStatus.IN_PROGRESS, 1, updated_at=utcnow()))  # busy, not stuck
    assert health.check_stuck(db, 10).status == "ok"
    add(db, *queued(QueueStatus.IN_PROGRESS, 2, kind="webhook", updated_at=utcnow() - timedelta(minutes=11)))
    result = health.check_stuck(db, 10)
    assert (result.status, result.value, result.error_code, result.step) == ("fail", "2 items", "ERP010",
                                                                            "sync_running")


def test_dead_items(db: Database) -> None:
    assert health.check_dead(db).status == "ok"
    add(db, *queued(QueueStatus.DEAD, 1))
    result = health.check_dead(db)
    assert (result.status, result.value, result.error_code, result.step) == ("warn", "1 item", "ERP010",
                                                                            "data_correct")


def test_open_conflicts(db: Database) -> None:
    assert health.check_open_conflicts(db).status == "ok"
    add(db, Conflict(doctype="Customer", status="resolved"), Conflict(doctype="Customer"), Conflict(doctype="Item"))
    result = health.check_open_conflicts(db)
    assert (result.status, result.value, result.error_code, result.step) == ("warn", "2 conflicts", "ERP009",
                                                                            "data_correct")


def log_rows(n: int, *, level: str = "INFO", code: str | None = None, outcome: str | None = "updated",
             age: timedelta = timedelta(0)) -> list[SyncLog]:
    return [SyncLog(level=level, outcome=outcome, error_code=code, ts=utcnow() - age) for _ in range(n)]


def test_error_rate(db: Database) -> None:
    assert health.check_error_rate(db, 10, 15).value == "0%"  # nothing processed is not an error rate
    add(db, *log_rows(8), *log_rows(50, outcome=None, level="ERROR"),  # rows without an outcome do not count
        *log_rows(40, level="ERROR", outcome="failed", age=timedelta(minutes=20)))  # outside the window
    assert health.check_error_rate(db, 10, 15).status == "ok"
    add(db, *log_rows(2, level="ERROR", code="ERP008", outcome="failed"))
    over = health.check_error_rate(db, 10, 15)
    assert (over.status, over.value, over.error_code, over.step) == ("fail", "20.0% (2 of 10)", "ERP008",
                                                                    "sync_running")
    assert "most common code ERP008" in over.detail
    assert health.check_error_rate(db, 25, 15).status == "ok"


# ============================================================================================ receiver


async def test_receiver_listening(sim: SimCluster) -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        result = await health.check_receiver(make_config(sim, webhooks={"port": port}))
    finally:
        server.close()
        await server.wait_closed()
    assert (result.status, result.value, result.step) == ("ok", f"listening on 127.0.0.1:{port}", "sync_running")


async def test_receiver_not_listening(sim: SimCluster) -> None:
    result = await health.check_receiver(make_config(sim, webhooks={"port": free_port()}))
    assert (result.status, result.error_code) == ("fail", "ERP006")
    assert "erpsync-tui serve" in result.quick_fix


async def test_receiver_disabled_is_a_warning(config: AppConfig, sim: SimCluster) -> None:
    result = await health.check_receiver(make_config(sim, webhooks={"enabled": False}))
    assert (result.status, result.value) == ("warn", "disabled")


# ============================================================================================ PostgreSQL


@pytest.mark.postgres
def test_postgres_connection_size_and_long_transactions(pg_cluster) -> None:
    db = open_database(pg_cluster.new_database())
    try:
        integrity = health.check_database_integrity(db)
        assert integrity.status == "ok" and "PostgreSQL 1" in integrity.detail
        size = health.check_database_size(db)
        assert size.status == "ok" and size.value.endswith(" MB") and "connections" in size.detail
        assert health.check_long_transactions(db).status == "ok"
        with db.writer_engine.connect() as other:  # a forgotten BEGIN in psql, as the server sees it
            other.exec_driver_sql("SELECT 1 FROM meta LIMIT 1")
            result = health.check_long_transactions(db, max_minutes=0.0)
            other.rollback()
        assert (result.status, result.error_code) == ("warn", "ERP010")
        assert "pg_terminate_backend" in result.quick_fix and "open" in result.detail
    finally:
        db.dispose()


@pytest.mark.postgres
def test_postgres_health_has_no_disk_free_but_size_and_transactions(pg_cluster) -> None:
    db = open_database(pg_cluster.new_database())
    try:
        checks = {planned.check for planned in health._plan(make_config_for_plan(), db, {}, owned=False)}
    finally:
        db.dispose()
    assert "database.disk_free" not in checks
    assert {"database.size", "database.transactions", "database.integrity"} <= checks


def make_config_for_plan() -> AppConfig:
    return AppConfig.model_validate({"sites": {"cloud": {"url": "http://127.0.0.1:9"},
                                               "local": {"url": "http://127.0.0.1:9"}}})

"""Hostile input end to end: odd document names, a huge Sales Order, broken config files, a state database that
is locked / unopenable / full, hostile text in console fields, replayed webhooks, and crash paths of the CLI.

Already covered elsewhere (not repeated here):
- receiver replay coalescing: tests/webhooks/test_receiver.py::test_replayed_event_coalesces
- unknown site / doctype: test_receiver.py::test_unknown_site_is_404, ::test_unknown_doctype_is_422
- invalid UTF-8 / invalid JSON bodies: test_receiver.py::test_garbage_bodies_are_400_with_a_reason
- corrupt / not-a-database state file: tests/test_store.py::test_corrupt_database_names_the_file,
  ::test_not_a_database_names_the_file
- YAML syntax errors, wrong types, unknown keys, empty file: tests/test_config.py
- markup/OSC in names, queue errors, conflict values: tests/tui/test_console.py::test_hostile_text_renders_...
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import event
from sqlmodel import select

from erpsync_tui.cli import cli
from erpsync_tui.engine.sync import Outcome, SyncEngine
from erpsync_tui.engine.worker import QueueWorker
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, open_database, sqlite
from erpsync_tui.store.models import Conflict, HealthResult, QueueItem, SyncLog
from erpsync_tui.store.queue import enqueue
from erpsync_tui.webhooks import create_app, serve_receiver
from erpsync_tui.webhooks.parsing import SIGNATURE_HEADER, sign

from .hostile_helpers import close_engine, config_text, install_secrets, make_engine, run_cli

HOSTILE_NAMES = [
    "A/B",
    "O'Brien \"Q\"",
    "x'; DROP TABLE sync_record;--",
    "$(rm -rf /) && `id`",
    "Ελληνικά 日本語 עברית 🚀",
    "a%2Fb?c#d&e=f",
    "tab\there",
]
ESC_OSC = "\x1b]8;;http://evil\x1b\\"
HOSTILE = "[bold red]boom[/] " + ESC_OSC + "link\x1b[2J\x07\x9b31m"


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=2) as sim:
        yield sim


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    yield database
    database.dispose()


@pytest.fixture
async def engine(cluster: SimCluster, db: Database) -> AsyncIterator[SyncEngine]:
    eng = make_engine(cluster, db, doctypes=["Customer", "Item", "Sales Order", "Hostile Note"])
    yield eng
    await close_engine(eng)


def integrity(db: Database) -> str:
    assert db.path is not None
    with sqlite3.connect(db.path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"sync_record", "sync_name", "sync_log", "queue_item"} <= tables, tables
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=["slash", "quotes", "sql", "shell", "non-latin", "url", "tab"])
async def test_hostile_item_names_sync_end_to_end(cluster: SimCluster, engine: SyncEngine, db: Database,
                                                  name: str) -> None:
    """Item is named by item_code, so the name itself is hostile; it must reach the other site unchanged."""
    item = {"item_code": name, "item_name": name, "item_group": "Products", "stock_uom": "Nos"}
    cluster["cloud"].insert("Item", item, fire_webhooks=False)
    assert (await engine.sync_document("Item", "cloud", name)).outcome == Outcome.CREATED
    assert engine.state.translate_name("Item", "cloud", name, "local") == name
    assert cluster["local"].get("Item", name)["item_name"] == name
    cluster["local"].update("Item", name, {"description": "changed back home"}, fire_webhooks=False)
    assert (await engine.sync_document("Item", "local", name)).outcome == Outcome.UPDATED
    assert cluster["cloud"].get("Item", name)["description"] == "changed back home"
    assert (await engine.sync_document("Item", "cloud", name)).outcome == Outcome.SKIPPED
    assert integrity(db) == "ok"


async def test_dot_dot_item_name_syncs(cluster: SimCluster, engine: SyncEngine) -> None:
    cluster["cloud"].insert("Item", {"item_code": "..", "item_group": "Products", "stock_uom": "Nos"},
                            fire_webhooks=False)
    assert (await engine.sync_document("Item", "cloud", "..")).outcome == Outcome.CREATED


async def test_hostile_names_of_an_unknown_doctype_map_to_new_names(cluster: SimCluster, engine: SyncEngine,
                                                                    db: Database) -> None:
    """A doctype the simulator creates on first insert keeps an explicit name; the copy gets its own (hash)
    name and the mapping holds the hostile name exactly, in both directions."""
    for name in HOSTILE_NAMES:
        doc = cluster["cloud"].insert("Hostile Note", {"name": name, "title": name}, fire_webhooks=False)
        assert doc["name"] == name
        assert (await engine.sync_document("Hostile Note", "cloud", name)).outcome == Outcome.CREATED
        other = engine.state.translate_name("Hostile Note", "cloud", name, "local")
        assert other is not None and cluster["local"].get("Hostile Note", other)["title"] == name
        assert engine.state.translate_name("Hostile Note", "local", other, "cloud") == name
    assert cluster["local"].count("Hostile Note") == len(HOSTILE_NAMES)
    with db.read() as s:
        logged = set(s.exec(select(SyncLog.name)).all())
    assert set(HOSTILE_NAMES) <= logged
    assert integrity(db) == "ok"


# ------------------------------------------------------------------------------------------ a huge document


async def test_sales_order_with_10000_rows_syncs_in_bounded_time(cluster: SimCluster, engine: SyncEngine) -> None:
    cloud = cluster["cloud"]
    customer = cloud.insert("Customer", {"customer_name": "Bulk Buyer"}, fire_webhooks=False)
    codes = [f"BULK-{i}" for i in range(5)]
    for code in codes:
        cloud.insert("Item", {"item_code": code, "item_group": "Products", "stock_uom": "Nos"}, fire_webhooks=False)
    rows = [{"item_code": codes[i % 5], "qty": 1 + i % 7, "rate": 2.5, "description": f"row {i}"}
            for i in range(10_000)]
    order = cloud.insert("Sales Order", {"customer": customer["name"], "transaction_date": "2025-01-02",
                                         "delivery_date": "2025-02-01", "items": rows}, fire_webhooks=False)
    started = time.perf_counter()
    result = await engine.sync_document("Sales Order", "cloud", order["name"])
    elapsed = time.perf_counter() - started
    assert result.outcome == Outcome.CREATED
    local_name = engine.state.translate_name("Sales Order", "cloud", order["name"], "local")
    copy = cluster["local"].get("Sales Order", local_name)
    assert len(copy["items"]) == 10_000
    assert [r["description"] for r in copy["items"][::997]] == [f"row {i}" for i in range(0, 10_000, 997)]
    assert elapsed < 30, f"10,000-row Sales Order took {elapsed:.1f}s"
    print(f"10,000-row Sales Order synced in {elapsed:.2f}s")
    assert (await engine.sync_document("Sales Order", "cloud", order["name"])).outcome == Outcome.SKIPPED


# ------------------------------------------------------------------------------------------ webhooks


async def test_replayed_webhook_after_its_sync_writes_nothing_twice(cluster: SimCluster, engine: SyncEngine,
                                                                    db: Database) -> None:
    """The same signed body delivered again after the first was synced: a new queue item, but no second write."""
    secret = "replay-secret-0123456789"
    app = create_app(engine.config, db, webhook_secret=secret)
    handle = await serve_receiver(app, "127.0.0.1", 0)
    try:
        doc = cluster["cloud"].insert("Customer", {"customer_name": "Replay"}, fire_webhooks=False)
        body = f'{{"doctype": "Customer", "name": "{doc["name"]}", "modified": "{doc["modified"]}"}}'.encode()
        worker = QueueWorker(engine, owner="replay")
        async with httpx.AsyncClient(base_url=handle.url) as client:
            for _ in range(2):
                response = await client.post("/webhook/cloud", content=body, headers={SIGNATURE_HEADER:
                                                                                    sign(body, secret)})
                assert response.status_code == 200
                await worker.drain()
    finally:
        await handle.stop()
    assert cluster["local"].count("Customer") == 1
    with db.read() as s:
        outcomes = [o for o in s.exec(select(SyncLog.outcome)).all() if o in ("created", "updated")]
        statuses = [q.status for q in s.exec(select(QueueItem)).all()]
    assert outcomes == ["created"]
    assert statuses and set(statuses) == {"done"}


# ------------------------------------------------------------------------------------------ config files


def _config_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    base = config_text(None)
    cases: dict[str, tuple[Path, str]] = {}
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text(base.replace("    url:", "\turl:", 1))
    cases["tabs"] = (tabs, "tab")
    dup = tmp_path / "dup.yaml"
    dup.write_text(base + "sync:\n  batch_size: 3\n")
    cases["duplicate-key"] = (dup, "duplicate")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4)
    cases["binary"] = (binary, str(binary))
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    cases["directory"] = (folder, str(folder))
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes(base.encode() + "  # caf\xe9 na\xefve\n".encode("latin-1"))
    cases["latin-1"] = (latin, str(latin))
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes(base.encode("utf-16"))
    cases["utf-16"] = (utf16, str(utf16))
    cases["missing"] = (tmp_path / "nope.yaml", "nope.yaml")
    return cases


def test_broken_config_files_exit_2_with_a_message(tmp_path: Path) -> None:
    """Each run is a real process; they run in parallel to stay fast."""
    cases = _config_cases(tmp_path)
    procs = {
        label: (subprocess.Popen([sys.executable, "-m", "erpsync_tui", "--config", str(path), "config", "check"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), needle)
        for label, (path, needle) in cases.items()
    }
    bad = []
    for label, (proc, needle) in procs.items():
        _out, err = proc.communicate(timeout=60)
        if proc.returncode != 2 or "Traceback" in err or needle.lower() not in err.lower():
            bad.append(f"{label}: exit {proc.returncode}: {err[-600:]}")
    assert not bad, "\n".join(bad)


# ------------------------------------------------------------------------------------------ state database


@pytest.fixture
def cli_env(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    for var, value in install_secrets(cluster).items():
        monkeypatch.setenv(var, value)
    config = tmp_path / "config.yaml"
    config.write_text(config_text(cluster))
    return config, tmp_path / "cli.db"


def test_locked_database_is_a_clear_exit_3(cli_env: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process holds BEGIN EXCLUSIVE beyond the busy timeout (shortened to 0.3 s for the test)."""
    config, path = cli_env
    open_database(f"sqlite:///{path}").dispose()
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 300)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(path), "sync"])
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(result.exception, SystemExit) and result.exit_code == 3, result.output
    assert "locked" in result.output and str(path) in result.output
    assert "Traceback" not in result.output
    assert waited >= 0.25  # it waited for the busy timeout before giving up


def test_wal_path_blocked_by_a_directory_is_a_clear_exit_3(cli_env: tuple[Path, Path]) -> None:
    """Read-only stand-in: root ignores chmod, so the -wal file is replaced by a directory, which SQLite cannot
    open or create — the same failure as a read-only folder. Real process, so nothing is shared with the test."""
    config, path = cli_env
    open_database(f"sqlite:///{path}").dispose()
    Path(f"{path}-wal").unlink(missing_ok=True)
    Path(f"{path}-wal").mkdir()
    result = run_cli(config, path, "status")
    assert result.returncode == 3, result.stderr
    assert str(path) in result.stderr and "Traceback" not in result.stderr


def test_query_only_database_refuses_writes_with_exit_3(cli_env: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Read-only in-process: every connection gets PRAGMA query_only, so the first write fails as SQLite's
    'attempt to write a readonly database'."""
    config, path = cli_env
    real = sqlite.configure_engine

    def read_only(engine: Any, *, immediate: bool) -> None:
        real(engine, immediate=immediate)

        @event.listens_for(engine, "connect")
        def _ro(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only = ON")

    monkeypatch.setattr(sqlite, "configure_engine", read_only)
    result = CliRunner().invoke(cli, ["--config", str(config), "--db", str(path), "status"])
    assert isinstance(result.exception, SystemExit) and result.exit_code == 3, result.output
    assert "readonly" in result.output and str(path) in result.output


async def test_disk_full_during_a_state_write_keeps_the_queue_item(cluster: SimCluster, engine: SyncEngine,
                                                                   db: Database) -> None:
    """SQLite says 'database or disk is full' on the write that records a synced document: the worker reports
    an error with a code, the queue item stays (failed, retried later), and the retry creates no duplicate."""
    doc = cluster["cloud"].insert("Customer", {"customer_name": "Disk Full"}, fire_webhooks=False)
    with db.write() as s:
        item_id = enqueue(s, site="cloud", doctype="Customer", name=doc["name"]).id
    full = {"armed": True}

    @event.listens_for(db.writer_engine, "before_cursor_execute")
    def _disk_full(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if full["armed"] and statement.lstrip().upper().startswith("UPDATE SYNC_RECORD"):
            full["armed"] = False
            raise sqlite3.OperationalError("database or disk is full")

    worker = QueueWorker(engine, owner="disk")
    first = await worker.run_once()
    assert (first.done, first.failed) == (0, 1)
    with db.read() as s:
        item = s.get(QueueItem, item_id)
        logged = s.exec(select(SyncLog).where(SyncLog.outcome == "failed")).all()
    assert item is not None and item.status == "failed" and item.error_code and item.error_code.startswith("ERP")
    assert "disk is full" in (item.last_error or "")
    assert logged and logged[-1].error_code == item.error_code
    with db.write() as s:  # due now
        s.get(QueueItem, item_id).next_attempt_at = datetime.now(UTC)
    await asyncio.sleep(0.05)
    again = await worker.drain()
    assert again.done == 1
    assert cluster["local"].count("Customer") == 1  # the lost bookkeeping did not cause a second create
    assert integrity(db) == "ok"


# ------------------------------------------------------------------------------------------ CLI crash paths


def test_reconcile_with_a_revoked_key_reports_without_traceback(cluster: SimCluster,
                                                                cli_env: tuple[Path, Path]) -> None:
    config, path = cli_env
    cluster["local"].set_faults(revoked=True)
    result = run_cli(config, path, "reconcile", "--doctype", "Customer")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "ERP002" in result.stderr + result.stdout


def test_serve_on_a_taken_port_reports_without_traceback(cluster: SimCluster, cli_env: tuple[Path, Path]) -> None:
    config, path = cli_env
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config.write_text(config_text(cluster, extra=f"webhooks:\n  port: {taken.getsockname()[1]}\n"))
        result = run_cli(config, path, "serve", timeout=60)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "in use" in result.stderr


# ------------------------------------------------------------------------------------------ console


def _seed_hostile(db: Database) -> None:
    now = datetime.now(UTC)
    with db.write() as s:
        s.add(Conflict(record_id=1, doctype="Hostile Note", names={"cloud": "N-1", "local": "N-1"},
                       versions={"cloud": {HOSTILE: "a"}, "local": {HOSTILE: "b"}}, modified={},
                       base={HOSTILE: "base"}, fields=[HOSTILE], created_at=now))
        s.add(HealthResult(check="site.reachable", target="cloud", status="fail", value=HOSTILE, detail=HOSTILE,
                           error_code="ERP001", quick_fix=HOSTILE, checked_at=now))
        s.add(SyncLog(ts=now, level="ERROR", site="cloud", doctype="Customer", name="CUST-1", outcome="failed",
                      error_code="ERP001", message=HOSTILE))


async def _visit(db: Database, keys: tuple[str, ...]) -> list[str]:
    """Screen text and SVG export after each key (screens other than the dashboard)."""
    from tui.testing import screen_text, wait_for, wait_loaded

    from erpsync_tui.config import AppConfig
    from erpsync_tui.tui.app import ConsoleApp

    _seed_hostile(db)
    config = AppConfig.model_validate({"sites": {"cloud": {"url": "http://127.0.0.1:9"},
                                                 "local": {"url": "http://127.0.0.1:10"}},
                                       "console": {"refresh_seconds": 0.2}})
    app = ConsoleApp(db, config, mode="attached", readonly=True, actor="ops", host="h")
    seen: list[str] = []
    async with app.run_test(size=(200, 50)) as pilot:
        await wait_loaded(pilot)
        for key in keys:
            await pilot.press(key)
            if key != "escape":
                await wait_loaded(pilot)
                await wait_for(pilot, lambda: "[bold red]boom[/]" in screen_text(app))
                await pilot.pause(0.1)
                seen += [screen_text(app), app.export_screenshot()]
    return seen


def _assert_inert(seen: list[str]) -> None:
    for shown in seen:
        assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert all("[bold red]boom[/]" in text for text in seen[::2])  # markup shown literally
    assert any("␛]8;;http://evil" in text for text in seen[::2])  # the escape made visible


async def test_hostile_text_in_health_detail_and_log_messages(db: Database) -> None:
    _assert_inert(await _visit(db, ("h", "escape", "l")))


async def test_hostile_conflict_field_name(db: Database) -> None:
    _assert_inert(await _visit(db, ("c",)))

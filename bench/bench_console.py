"""Benchmark: the console's cost on a big state database.

    python bench/bench_console.py [--log-rows 1000000] [--queue-items 100000] [--runs 20]

Builds a SQLite state file in a temporary directory (1,000,000 sync_log rows and 100,000 queue items by
default, written with executemany in one transaction), then prints:

(a) the database time of one dashboard refresh — exactly `erpsync_tui.tui.data.load_dashboard`, the queries
    the dashboard runs: engine lease, queue depth by status + oldest pending, new log lines after the last
    seen id, open conflict count, health results — median of `--runs` runs (target < 25 ms), both for the
    first refresh (newest 200 log lines) and a following one (lines after the last seen id);
(b) console start-to-first-frame: from `ConsoleApp(...)` to the dashboard showing its first data under
    `run_test` (80×24), median of 5;
(c) the conflicts screen (run_test 160×48, median of `--visits`): the first visit — from pressing `c` on the
    dashboard to the first frame drawn with the diff on screen — for a 1,000-row Sales Order conflict (15 rows
    edited per side, one row on both) and for a 10-field Customer conflict; then, with the screen open, `n` to
    the other conflict (the open-screen time). Each with screens mounted ahead of time (the console's default,
    `prewarm`) and without, so the figure says what the prewarm buys. Goal: first visit ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from erpsync_tui.config import AppConfig
from erpsync_tui.store import Database, open_database
from erpsync_tui.store.models import Conflict
from erpsync_tui.tui import data
from erpsync_tui.tui.app import ConsoleApp

# The fixed state database of the console's tests (tests/tui/fixture.py: test code, not shipped in the package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tui.fixture import seed

NOW = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)
STATUSES = ["done"] * 90 + ["pending"] * 5 + ["failed"] * 3 + ["dead"] * 1 + ["in_progress"] * 1
LEVELS = ["INFO"] * 90 + ["WARNING"] * 7 + ["ERROR"] * 3


def _ts(seconds_ago: float) -> str:
    # SQLModel's UTC type stores naive UTC text on SQLite.
    return (NOW - timedelta(seconds=seconds_ago)).replace(tzinfo=None).isoformat(sep=" ")


def build(path: Path, log_rows: int, queue_items: int) -> Database:
    db = open_database(f"sqlite:///{path}")
    seed(db, now=NOW)
    rng = random.Random(7)
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            "INSERT INTO sync_log (ts, level, site, doctype, name, direction, outcome, error_code, message) "
            "VALUES (?, ?, ?, 'Customer', ?, 'cloud→local', 'updated', NULL, ?)",
            ((_ts(log_rows - i), rng.choice(LEVELS), rng.choice(("cloud", "local")), f"CUST-{i:07d}",
              f"updated on the other site ({i % 7} fields)") for i in range(log_rows)),
        )
        con.executemany(
            "INSERT INTO queue_item (kind, site, doctype, name, payload, status, attempts, max_attempts, "
            "next_attempt_at, dedupe_key, coalesced, created_at, updated_at) "
            "VALUES ('sync', ?, 'Customer', ?, '{}', ?, 0, 5, ?, ?, 0, ?, ?)",
            ((rng.choice(("cloud", "local")), f"CUST-{i:07d}", rng.choice(STATUSES), _ts(queue_items - i),
              f"sync|cloud|Customer|CUST-{i:07d}", _ts(queue_items - i), _ts(queue_items - i))
             for i in range(queue_items)),
        )
    con.execute("ANALYZE")
    con.close()
    return db


def refresh_ms(db: Database, runs: int, after_log_id: int | None) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        data.load_dashboard(db, now=NOW, after_log_id=after_log_id)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def query_breakdown(db: Database) -> dict[str, float]:
    """Each query of the refresh alone (median of 10), to see which one dominates."""
    from erpsync_tui.store import queries
    from erpsync_tui.store.control import engine_status

    def timed(fn) -> float:
        samples = []
        for _ in range(10):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)

    def in_session(fn):
        def run():
            with db.read() as session:
                fn(session)
        return run

    return {
        "engine_status": timed(lambda: engine_status(db, now=NOW)),
        "queue_depth": timed(in_session(lambda s: queries.queue_depth(s, now=NOW))),
        "log_tail(200)": timed(in_session(lambda s: queries.log_tail(s, limit=200))),
        "open_conflict_count": timed(in_session(queries.open_conflict_count)),
        "health_results": timed(in_session(queries.health_results)),
    }


async def first_frame_ms(db: Database, config: AppConfig) -> float:
    started = time.perf_counter()
    app = ConsoleApp(db, config, actor="bench", host="bench", now=lambda: NOW)
    async with app.run_test(size=(80, 24)) as pilot:
        while getattr(app.screen, "loads", 0) < 1:
            await pilot.pause(0.005)
        await pilot.pause()
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed


def conflict_db(path: Path) -> Database:
    """The fixture database with its two conflicts replaced: a 1,000-row Sales Order (#1), a 10-field Customer (#2)."""
    db = open_database(f"sqlite:///{path}")
    seed(db, now=NOW)
    base = {"customer": "Acme", "delivery_date": "2025-03-10",
            "items": [{"item_code": f"ITEM-{i % 7}", "qty": i + 1, "rate": 10, "warehouse": "Main"}
                      for i in range(1000)]}
    cloud = {**base, "items": [dict(r) for r in base["items"]]}
    local = {**base, "items": [dict(r) for r in base["items"]]}
    for n in range(15):
        cloud["items"][n * 60]["qty"] = 9000 + n
        local["items"][n * 60 + 7]["rate"] = 12
    local["items"][0]["qty"] = 7000  # the first row changed on both sites: a row conflict
    customer = {f"field_{i}": f"value {i}" for i in range(10)}
    with db.write() as session:
        for old in session.exec(select(Conflict)).all():
            session.delete(old)
        session.add(Conflict(id=1, record_id=1, doctype="Sales Order", names={"cloud": "SO-1", "local": "SO-9"},
                             versions={"cloud": cloud, "local": local}, modified={}, base=base, fields=["items"]))
        session.add(Conflict(id=2, record_id=2, doctype="Customer", names={"cloud": "C-1", "local": "C-1"},
                             versions={"cloud": {**customer, "field_1": "cloud", "field_2": "cloud"},
                                       "local": {**customer, "field_1": "local", "field_3": "local"}},
                             modified={}, base=customer, fields=["field_1"]))
    return db


async def conflict_visit(db: Database, config: AppConfig, first: int, *, prewarm: bool) -> tuple[float, float]:
    """(first visit ms, open-screen ms): `c` to the frame showing conflict `first`, then `n` to the other."""
    app = ConsoleApp(db, config, actor="bench", host="bench", now=lambda: NOW, prewarm=prewarm)
    frames: list[tuple[float, bool]] = []
    display = app._display

    def record(screen, renderable) -> None:  # every frame Textual draws, and whether it shows a diff
        view = getattr(screen, "model", None)
        frames.append((time.perf_counter(), view is not None and screen.shown_id == wanted[0]))
        display(screen, renderable)

    app._display = record  # type: ignore[method-assign]
    wanted = [first]
    async with app.run_test(size=(160, 48)) as pilot:
        while getattr(app.screen, "loads", 0) < 1:
            await pilot.pause(0.005)
        await pilot.pause(1.5)  # the console idles before the operator's first key (and prewarms meanwhile)
        conflicts = app._screen_stacks.get("conflicts")
        if conflicts and conflicts[0].shown_id != first:  # prepared on another conflict: select this one
            conflicts[0].select_conflict(first)
            await pilot.pause(0.5)
        frames.clear()
        started = time.perf_counter()
        await pilot.press("c")
        while not any(shown for _, shown in frames):
            await pilot.pause(0.001)
        visit = next(ts for ts, shown in frames if shown) - started
        await pilot.pause(0.3)
        wanted[0] = 2 if first == 1 else 1
        frames.clear()
        started = time.perf_counter()
        await pilot.press("n")
        while not any(shown for _, shown in frames):
            await pilot.pause(0.001)
        step = next(ts for ts, shown in frames if shown) - started
    return visit * 1000, step * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--queue-items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--visits", type=int, default=5)
    parser.add_argument("--only-conflicts", action="store_true", help="run (c) only")
    args = parser.parse_args(argv)
    config = AppConfig.model_validate({"sites": {"cloud": {"url": "http://127.0.0.1:9"},
                                                 "local": {"url": "http://127.0.0.1:10"}}})
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        conflicts_part(Path(tmp) / "conflicts.db", config, args.visits)
        if args.only_conflicts:
            return
        started = time.perf_counter()
        db = build(Path(tmp) / "state.db", args.log_rows, args.queue_items)
        print(f"built {args.log_rows:,} log rows + {args.queue_items:,} queue items in "
              f"{time.perf_counter() - started:.1f} s")
        with db.read() as session:
            last_id = max(r.id or 0 for r in data.queries.log_tail(session, limit=1))
        first = refresh_ms(db, args.runs, None)
        following = refresh_ms(db, args.runs, last_id - 5)
        verdict = "OK" if max(first, following) < 25 else "OVER the 25 ms target"
        print(f"(a) dashboard refresh, database time, median of {args.runs}: first {first:.1f} ms, "
              f"following {following:.1f} ms — {verdict}")
        for name, ms in query_breakdown(db).items():
            print(f"      {name:<20} {ms:6.2f} ms")
        frames = [asyncio.run(first_frame_ms(db, config)) for _ in range(5)]
        median = statistics.median(frames)
        print(f"(b) console start to first data frame (run_test 80×24), median of 5: {median:.0f} ms")
        db.dispose()


def conflicts_part(path: Path, config: AppConfig, visits: int) -> None:
    db = conflict_db(path)
    for prewarm in (True, False):
        label = "screens mounted ahead (default)" if prewarm else "no prewarm (mounted on first visit)"
        for first, name in ((1, "1,000-row Sales Order"), (2, "10-field Customer")):
            if not prewarm and first != 1:
                # A screen mounted on its visit shows the first conflict of the list (#1): waiting for #2 there
                # never ended. The 10-field case without the prewarm is not measured.
                print(f"(c) {label}: first visit, {name}: not measured (the screen opens on conflict #1)")
                continue
            runs = [asyncio.run(conflict_visit(db, config, first, prewarm=prewarm)) for _ in range(visits)]
            visit = statistics.median(r[0] for r in runs)
            step = statistics.median(r[1] for r in runs)
            verdict = "OK" if visit <= 150 else "OVER the 150 ms goal"
            print(f"(c) {label}: first visit, {name}: {visit:.0f} ms ({verdict}); open screen, next conflict: "
                  f"{step:.0f} ms — median of {visits}")
    db.dispose()


if __name__ == "__main__":
    main()

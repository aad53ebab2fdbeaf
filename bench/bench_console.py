"""Benchmark: the console's cost on a big state database.

    python bench/bench_console.py [--log-rows 1000000] [--queue-items 100000] [--runs 20]

Builds a SQLite state file in a temporary directory (1,000,000 sync_log rows and 100,000 queue items by
default, written with executemany in one transaction), then prints:

(a) the database time of one dashboard refresh — exactly `erpsync_tui.tui.data.load_dashboard`, the queries
    the dashboard runs: engine lease, queue depth by status + oldest pending, new log lines after the last
    seen id, open conflict count, health results — median of `--runs` runs (target < 25 ms), both for the
    first refresh (newest 200 log lines) and a following one (lines after the last seen id);
(b) console start-to-first-frame: from `ConsoleApp(...)` to the dashboard showing its first data under
    `run_test` (80×24), median of 5.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from erpsync_tui.config import AppConfig
from erpsync_tui.store import Database, open_database
from erpsync_tui.tui import data
from erpsync_tui.tui.app import ConsoleApp
from erpsync_tui.tui.fixture import seed

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-rows", type=int, default=1_000_000)
    parser.add_argument("--queue-items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    config = AppConfig.model_validate({"sites": {"cloud": {"url": "http://127.0.0.1:9"},
                                                 "local": {"url": "http://127.0.0.1:10"}}})
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
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


if __name__ == "__main__":
    main()

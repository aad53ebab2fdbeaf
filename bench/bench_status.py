"""`erpsync-tui status` on a state database tracking 1,000,000 records against one tracking 10,000, same run.

Each database is built with one executemany per table (records, both sites' names, a log row per record,
some queue items), then `status --json` runs as a real subprocess (the operator's cost: interpreter start,
imports, open, queries) `--runs` times on each, interleaved; the medians and their ratio are printed. Goal
(issue 15): the large one within 1.2x of the small one, i.e. no work that grows with the database on open.

The process figure is mostly interpreter start and imports, which a loaded machine stretches; so the database
part — open, then the queries `status` makes — is also timed in this process (cold: page cache dropped first),
and so is the exact COUNT per status that the kept counts (store/counts.py) replaced, for comparison.

    python bench/bench_status.py [--large 1000000] [--small 10000] [--runs 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from erpsync_tui.store import open_database

NOW = "2026-01-01 00:00:00.000000"


def build(path: Path, records: int) -> None:
    open_database(f"sqlite:///{path}").dispose()  # schema through the product's own code
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    chunk = 50_000
    for start in range(1, records + 1, chunk):
        ids = range(start, min(records + 1, start + chunk))
        conn.executemany(
            "INSERT INTO sync_record (id, doctype, status, base, base_hash, origin_site, created_at, updated_at) "
            "VALUES (?, 'Customer', 'synced', ?, ?, 'cloud', ?, ?)",
            ((i, f'{{"customer_name": "Customer {i}", "territory": "All Territories"}}', f"{i:064x}", NOW, NOW)
             for i in ids))
        for site in ("cloud", "local"):
            conn.executemany(
                "INSERT INTO sync_name (record_id, site, doctype, name, content_hash, modified, synced_at) "
                "VALUES (?, ?, 'Customer', ?, ?, ?, ?)",
                ((i, site, f"CUST-{i:07d}", f"{i:064x}", NOW, NOW) for i in ids))
        conn.executemany(
            "INSERT INTO sync_log (ts, level, site, doctype, name, outcome, message) "
            "VALUES (?, 'INFO', 'cloud', 'Customer', ?, 'created', ?)",
            ((NOW, f"CUST-{i:07d}", f"created CUST-{i:07d} on local") for i in ids))
        conn.commit()
    conn.executemany(
        "INSERT INTO queue_item (kind, site, doctype, name, payload, status, attempts, max_attempts, "
        "next_attempt_at, dedupe_key, coalesced, created_at, updated_at) "
        "VALUES ('sync', 'cloud', 'Customer', ?, '{}', ?, 0, 5, ?, ?, 0, ?, ?)",
        ((f"CUST-{i:07d}", "pending" if i % 2 else "done", NOW, f"sync|cloud|Customer|CUST-{i:07d}", NOW, NOW)
         for i in range(1, min(records, 1000) + 1)))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def drop_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's pages (posix_fadvise): the cold-cache case the issue measured."""
    for file in (path, Path(f"{path}-wal")):
        if file.exists():
            fd = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def time_status(path: Path, *, cold: bool) -> float:
    if cold:
        drop_page_cache(path)
    exe = Path(sys.executable).with_name("erpsync-tui")
    started = time.perf_counter()
    subprocess.run([str(exe), "--db", str(path), "status", "--json"], check=True, capture_output=True)
    return time.perf_counter() - started


def time_queries(path: Path, *, cold: bool, exact: bool = False) -> float:
    """Open the database and make the reads `status` makes, in this process (or, `exact`, a COUNT per status)."""
    from erpsync_tui.store import counts, queries
    from erpsync_tui.store.control import engine_status

    if cold:
        drop_page_cache(path)
    started = time.perf_counter()
    db = open_database(f"sqlite:///{path}")
    try:
        with db.read() as session:
            if exact:
                counts.exact_counts(session, "sync_record")
                counts.exact_counts(session, "queue_item")
            else:
                queries.record_counts(session)
                queries.queue_depth(session)
            queries.open_conflict_count(session)
            queries.log_tail(session, limit=10)
        engine_status(db)
        return time.perf_counter() - started
    finally:
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the databases here (reused if present)")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench-status-"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for label, n in (("small", args.small), ("large", args.large)):
        path = folder / f"{label}-{n}.db"
        if not path.exists():
            started = time.perf_counter()
            build(path, n)
            print(f"built {path.name}: {n:,} records, {path.stat().st_size / 1e6:,.0f} MB "
                  f"in {time.perf_counter() - started:.1f} s")
        paths[label] = path
    for cold in (False, True):
        times: dict[str, list[float]] = {"small": [], "large": []}
        for _ in range(args.runs):
            for label, path in paths.items():  # interleaved: the machine's slow minutes hit both alike
                times[label].append(time_status(path, cold=cold))
        small, large = statistics.median(times["small"]), statistics.median(times["large"])
        print(f"status --json, {'cold' if cold else 'warm'} page cache, median of {args.runs}: "
              f"{args.small:,} records {small * 1000:.0f} ms, {args.large:,} records {large * 1000:.0f} ms, "
              f"ratio {large / small:.2f} (goal <= 1.2)")
    for exact in (False, True):
        for cold in (False, True):
            db_times: dict[str, list[float]] = {"small": [], "large": []}
            for _ in range(args.runs):
                for label, path in paths.items():
                    db_times[label].append(time_queries(path, cold=cold, exact=exact))
            small, large = statistics.median(db_times["small"]), statistics.median(db_times["large"])
            what = "with an exact COUNT per status instead (before)" if exact else "as status makes them"
            print(f"open + queries {what}, {'cold' if cold else 'warm'}: {small * 1000:.1f} ms vs "
                  f"{large * 1000:.1f} ms, ratio {large / small:.2f}")


if __name__ == "__main__":
    main()

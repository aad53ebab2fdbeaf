"""Benchmark: reconcile 10,000 documents per site against a full sync of the same documents, same run.

    python bench/bench_reconcile.py [--docs 10000] [--latency-ms 5] [--doctype "Sales Order"]

Two simulator sites (in a child process, 5 ms latency per request); cloud seeded with N customers. In order:
a full sync cloud → local that creates them (timed), a second full sync that finds nothing to do (the no-op
baseline), then `reconcile` of Customer (both sites read, pairs compared). Goal (issue 15): reconcile no slower
than the no-op full sync, and linear in N (run with --docs 2500 and 10000 to see the ratio).

`--doctype "Sales Order"` (the seed makes N/5 orders with item rows; customers and items are synced first, for
their links): a doctype with child tables, whose list rows are not whole documents — reconcile reads each order
with its own GET (Frappe's list API leaves child tables out), concurrently under the site's limits.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.store import open_database

SITES = ("cloud", "local")


def serve_sites(docs: int, latency_ms: float, ready: Any, info: Any, stop: Any) -> None:
    from erpsync_tui.sim import SimCluster

    with SimCluster(list(SITES), seed=7, latency_ms=latency_ms) as cluster:
        cluster["cloud"].seed(docs)
        for name in SITES:
            site = cluster[name]
            info[name] = (site.url, site.api_key, site.api_secret)
        ready.set()
        stop.wait()


async def run(info: dict[str, tuple[str, str, str]], db_path: Path, doctype: str) -> dict[str, float]:
    sites = {name: {"url": info[name][0], "max_concurrency": 32, "requests_per_second": 100000,
                    "timeout_seconds": 30} for name in SITES}
    doctypes = ["Customer", "Item", "Sales Order"] if doctype == "Sales Order" else [doctype]
    config = AppConfig.model_validate({"sites": sites, "sync": {"doctypes": doctypes, "concurrency": 32,
                                                                "batch_size": 500}})
    db = open_database(f"sqlite:///{db_path}")
    connectors = {name: FrappeConnector(name, config.sites[name], info[name][1], info[name][2]) for name in SITES}
    engine = SyncEngine(config, db, connectors)
    figures: dict[str, float] = {}
    try:
        started = time.perf_counter()
        created = await full_sync(engine, direction="cloud_to_local")
        figures["full sync (creates)"] = time.perf_counter() - started
        started = time.perf_counter()
        noop = await full_sync(engine, doctypes=[doctype])
        figures["full sync (no-op)"] = time.perf_counter() - started
        started = time.perf_counter()
        report = await reconcile(engine, doctype)
        figures["reconcile"] = time.perf_counter() - started
        figures["documents"] = report.counts["cloud"]
        figures["created"] = created.processed
        figures["no-op writes"] = noop.writes
        figures["differences"] = len(report.differences)
    finally:
        for connector in connectors.values():
            await connector.aclose()
        db.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--doctype", default="Customer", choices=("Customer", "Sales Order"))
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    info, ready, stop = manager.dict(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=serve_sites, args=(args.docs, args.latency_ms, ready, info, stop), daemon=True)
    child.start()
    try:
        if not ready.wait(180):
            raise SystemExit("the simulator did not start")
        with tempfile.TemporaryDirectory() as tmp:
            figures = asyncio.run(run(dict(info), Path(tmp) / "state.db", args.doctype))
    finally:
        stop.set()
        child.join(30)
    print(f"{int(figures['documents'])} {args.doctype} per site ({int(figures['created'])} documents created in "
          f"all), latency {args.latency_ms:g} ms per request")
    for key in ("full sync (creates)", "full sync (no-op)", "reconcile"):
        print(f"{key:<22} {figures[key]:7.2f} s")
    print(f"reconcile / no-op full sync: {figures['reconcile'] / figures['full sync (no-op)']:.2f} "
          f"(goal <= 1.0); differences found: {int(figures['differences'])}; no-op writes: "
          f"{int(figures['no-op writes'])}")


if __name__ == "__main__":
    main()

"""Benchmark: syncing N documents between two simulator sites with 5 ms latency per request.

    python bench/bench_sync.py [--docs 10000] [--latency-ms 5] [--baseline-docs 300] [--concurrency 32]
                               [--db postgresql+psycopg://user@host/scratch]

Prints documents/s for
- this engine: a full sync cloud → local (state in a real SQLite file, every decision logged);
- a sequential one-request-at-a-time baseline run in this same process against the same sites: list the names,
  then for each document GET it from cloud and POST it to another site;
- the simulator's ceiling for the engine's own request mix, in documents/s: a client that does nothing but the
  requests the engine's bulk path sends for the same documents (list pages of whole documents from cloud,
  insert_many calls of 200 to a fresh site, the created documents listed back), pipelined and concurrent, with
  no state, hashing or logging. Moving a document over these sites with these requests cannot go faster; the
  engine's share of it is what its own work (state, canonical form, links, log) costs.
With `--db` the engine runs are repeated with that database as the state store (a scratch database: the
benchmark drops and recreates erpsync's tables in it before each run), and the figures are printed side by side
with SQLite's. The sites' client-side rate limit is raised (requests_per_second 100000) so that the engine and
its database, not the limit, set the pace.
For context it also prints the old request-rate ceiling (16 httpx clients, GET/PUT mix, no latency) in req/s.
The sites run in a child process so that the simulator does not compete with the engine for this
process's GIL; every request stays on loopback and the run is bounded by the document count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from erpsync_tui.config import AppConfig
from erpsync_tui.connectors import FrappeConnector
from erpsync_tui.engine.batch_pool import BatchPool
from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim.bench import measure_ceiling, measure_server
from erpsync_tui.store import open_database

SITES = ("cloud", "local", "local2", "local3", "local4", "baseline", "ceiling")  # local3/4: the --db runs
SYSTEM = ("name", "owner", "creation", "modified", "modified_by", "idx", "doctype")


def serve_sites(docs: int, latency_ms: float, ready: Any, info: Any, stop: Any) -> None:
    """Child process: three sites; `cloud` seeded with `docs` customers (plus the seed's items and orders)."""
    from erpsync_tui.sim import SimCluster

    with SimCluster(list(SITES), seed=7, latency_ms=latency_ms) as cluster:
        cluster["cloud"].seed(docs)
        for name in SITES:
            site = cluster[name]
            info[name] = (site.url, site.api_key, site.api_secret)
        ready.set()
        stop.wait()


async def sequential_baseline(cloud: tuple[str, str, str], target: tuple[str, str, str], limit: int) -> float:
    """One request at a time: list names, then GET each from cloud and POST it to the target site."""
    (curl, ckey, csecret), (turl, tkey, tsecret) = cloud, target
    async with httpx.AsyncClient(base_url=curl, headers={"Authorization": f"token {ckey}:{csecret}"}) as src, \
            httpx.AsyncClient(base_url=turl, headers={"Authorization": f"token {tkey}:{tsecret}"}) as dst:
        names = (await src.get("/api/resource/Customer", params={"limit_page_length": limit})).json()["data"]
        started = time.perf_counter()
        for row in names:
            doc = (await src.get(f"/api/resource/Customer/{row['name']}")).json()["data"]
            body = {k: v for k, v in doc.items() if k not in SYSTEM}
            (await dst.post("/api/resource/Customer", json=body)).raise_for_status()
        return len(names) / (time.perf_counter() - started)


async def mix_ceiling(cloud: tuple[str, str, str], target: tuple[str, str, str], *, page: int = 500,
                      chunk: int = 200, concurrency: int = 8) -> tuple[float, int]:
    """The engine's request mix with nothing else: (documents/s, documents moved)."""
    (curl, ckey, csecret), (turl, tkey, tsecret) = cloud, target
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    src = httpx.AsyncClient(base_url=curl, headers={"Authorization": f"token {ckey}:{csecret}"}, limits=one,
                            timeout=30)
    dst = [httpx.AsyncClient(base_url=turl, headers={"Authorization": f"token {tkey}:{tsecret}"}, limits=one,
                             timeout=30) for _ in range(concurrency)]
    pages: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(maxsize=4)
    moved = 0

    async def lister() -> None:
        last = None
        while True:
            filters = json.dumps([["modified", ">", last]] if last else [])
            rows = (await src.get("/api/resource/Customer", params={
                "fields": '["*"]', "filters": filters, "order_by": "modified asc, name asc",
                "limit_page_length": page})).json()["data"]
            if rows:
                await pages.put(rows)
                last = rows[-1]["modified"]
            if len(rows) < page:
                for _ in dst:
                    await pages.put(None)
                return

    async def inserter(client: httpx.AsyncClient) -> None:
        nonlocal moved
        while (rows := await pages.get()) is not None:
            for i in range(0, len(rows), chunk):
                docs = [{"doctype": "Customer", **{k: v for k, v in r.items() if k not in SYSTEM}}
                        for r in rows[i:i + chunk]]
                answer = await client.post("/api/method/frappe.client.insert_many", json={"docs": json.dumps(docs)})
                names = answer.raise_for_status().json()["message"]
                back = await client.get("/api/resource/Customer", params={
                    "fields": '["*"]', "filters": json.dumps([["name", "in", names]]),
                    "order_by": "modified asc, name asc", "limit_page_length": len(names)})
                moved += len(back.raise_for_status().json()["data"])

    started = time.perf_counter()
    try:
        await asyncio.gather(lister(), *(inserter(c) for c in dst))
    finally:
        for client in (src, *dst):
            await client.aclose()
    return moved / (time.perf_counter() - started), moved


def fresh_state(url: str) -> None:
    """An empty state store at `url`: SQLite files are new; a server database gets its tables dropped."""
    if url.startswith("sqlite"):
        return
    from sqlmodel import SQLModel

    from erpsync_tui.store.db import Database

    db = Database(url)
    SQLModel.metadata.drop_all(db.writer_engine)
    db.dispose()


async def engine_run(
    info: dict[str, tuple[str, str, str]], concurrency: int, url: str, *, target: str = "local",
    workers: int = 0,
) -> tuple[float, int, float]:
    """A full sync cloud → `target` (as the site "local"); with `workers`, its batches in that many processes."""
    urls = {"cloud": info["cloud"], "local": info[target]}
    sites = {name: {"url": urls[name][0], "max_concurrency": concurrency, "requests_per_second": 100000,
                    "timeout_seconds": 30} for name in ("cloud", "local")}
    config = AppConfig.model_validate({"sites": sites, "sync": {
        "doctypes": ["Customer"], "concurrency": concurrency, "batch_size": 500}})
    fresh_state(url)
    db = open_database(url)
    connectors = {name: FrappeConnector(name, config.sites[name], urls[name][1], urls[name][2])
                  for name in ("cloud", "local")}
    engine = SyncEngine(config, db, connectors)
    if workers:
        # Started before the clock, as `serve` or `sync` start them before the first batch (~1 s each, in parallel).
        engine.batch_pool = BatchPool(config, url, {
            name: (urls[name][1], urls[name][2]) for name in ("cloud", "local")}, workers)
        booting = time.perf_counter()
        for future in engine.batch_pool.start():
            future.result()
        print(f"({workers} batch worker processes started in {time.perf_counter() - booting:.2f}s, not timed)")
    started = time.perf_counter()
    summary = await full_sync(engine, direction="cloud_to_local")
    elapsed = time.perf_counter() - started
    if engine.batch_pool:
        if engine.batch_pool.batches == 0:
            print("warning: the worker processes ran no batch", file=sys.stderr)
        engine.batch_pool.close()
    requests = sum(connector.stats.requests for connector in connectors.values())
    for connector in connectors.values():
        await connector.aclose()
    db.dispose()
    if summary.failed:
        print(f"warning: {summary.failed} documents failed during the run", file=sys.stderr)
    return summary.processed / elapsed, summary.processed, requests / max(summary.processed, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--baseline-docs", type=int, default=300, help="documents the slow baseline syncs")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--ceiling-seconds", type=float, default=4.0)
    parser.add_argument("--engine-workers", type=int, default=3,
                        help="also run the engine with its batches in this many worker processes (0: don't)")
    parser.add_argument("--db", default=None, metavar="URL",
                        help="also run the engine on this state database (e.g. postgresql+psycopg://…/scratch; "
                             "its erpsync tables are dropped first) and print it beside SQLite")
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    info, ready, stop = manager.dict(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=serve_sites, args=(args.docs, args.latency_ms, ready, info, stop), daemon=True)
    child.start()
    try:
        if not ready.wait(120):
            raise SystemExit("the simulator did not start")
        sites = dict(info)
        baseline = asyncio.run(sequential_baseline(sites["cloud"], sites["baseline"], args.baseline_docs))
        with tempfile.TemporaryDirectory() as tmp:
            runs = {"SQLite": (f"sqlite:///{Path(tmp) / 'state.db'}", f"sqlite:///{Path(tmp) / 'state2.db'}",
                               "local", "local2")}
            if args.db:
                runs[label_of(args.db)] = (args.db, args.db, "local3", "local4")
            figures: dict[str, tuple[float, int, float, float, float]] = {}
            for label, (url, url2, target, target2) in runs.items():
                rate, processed, per_doc = asyncio.run(engine_run(sites, args.concurrency, url, target=target))
                workers_rate = workers_processed = 0.0
                if args.engine_workers:
                    workers_rate, workers_processed, _ = asyncio.run(engine_run(
                        sites, args.concurrency, url2, target=target2, workers=args.engine_workers))
                figures[label] = (rate, processed, per_doc, workers_rate, workers_processed)
            engine_rate, processed, per_doc, workers_rate, workers_processed = figures["SQLite"]
        ceiling, moved = asyncio.run(mix_ceiling(sites["cloud"], sites["ceiling"]))
    finally:
        stop.set()
        child.join(30)
    old_ceiling = measure_ceiling(args.ceiling_seconds)
    raw = measure_server(args.ceiling_seconds).rps

    print(f"documents synced by the engine: {processed} (latency {args.latency_ms:g} ms per request, "
          f"concurrency {args.concurrency}, {per_doc:.3f} requests per document)")
    print(f"engine:              {engine_rate:8.1f} docs/s  (one process)")
    if args.engine_workers:
        print(f"engine, {args.engine_workers} workers:   {workers_rate:8.1f} docs/s  (sync.workers: "
              f"{args.engine_workers}; {workers_processed:.0f} docs to a second fresh site)")
    print(f"sequential baseline: {baseline:8.1f} docs/s  ({args.baseline_docs} docs, one request at a time)")
    print(f"simulator ceiling:   {ceiling:8.1f} docs/s  (the engine's request mix alone, {moved} docs, same sites)")
    print(f"  (request rate, for context: {old_ceiling:.0f} req/s with 16 httpx clients, {raw:.0f} req/s raw "
          "sockets, GET/PUT mix, no latency)")
    if len(figures) > 1:
        print_side_by_side(figures, args.engine_workers)
    print(f"engine / baseline:   {engine_rate / baseline:8.1f}x   (target >= 10x)")
    print(f"engine / ceiling:    {100 * engine_rate / ceiling:8.1f}%   (target >= 60%)")
    if args.engine_workers:
        print(f"  with {args.engine_workers} workers:    {workers_rate / baseline:8.1f}x, "
              f"{100 * workers_rate / ceiling:.1f}% of the ceiling")


def label_of(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else url.split(":", 1)[0]


def print_side_by_side(figures: dict[str, tuple[float, int, float, float, float]], workers: int) -> None:
    labels = list(figures)
    print("state store:         " + "".join(f"{label:>14}" for label in labels) + "   (same sites, same run)")
    print("engine, one process: " + "".join(f"{figures[label][0]:>9.1f} d/s" for label in labels))
    if workers:
        print(f"engine, {workers} workers:   " + "".join(f"{figures[label][3]:>9.1f} d/s" for label in labels))
    base = figures["SQLite"]
    for label in labels[1:]:
        ratio = figures[label][0] / base[0]
        line = f"{label} / SQLite:   {ratio:8.2f}x one process"
        if workers and base[3]:
            line += f", {figures[label][3] / base[3]:.2f}x with {workers} workers"
        print(line)


if __name__ == "__main__":
    main()

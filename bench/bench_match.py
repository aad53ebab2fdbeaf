"""Benchmark: first contact of two sites that already hold the same N customers (5 ms latency per request).

    python bench/bench_match.py [--docs 20000] [--latency-ms 5] [--differ-percent 1]

`cloud` and `local` each hold the same N customers (named by their own series, in another order, so their
names differ; `--differ-percent` of them with another territory on local). Printed, in documents/s:
- pairing: the matching pass alone (`pair_before_sync`: both sites listed by the key fields, keys compared,
  every pair recorded) — what a first full sync does before anything else;
- first contact: the whole first full sync of the two populated sites (the pairing pass, then the walk that
  compares every pair and applies the policy, here cloud_wins, to the differing ones);
- plain full sync: the same N documents synced the usual way, cloud → an empty site (creates), same process,
  same sites' process — the rate the engine syncs these documents at when nothing needs pairing.
The goal: pairing at least as fast as syncing. Sites run in a child process (they do not compete for this
process's GIL), as in bench_sync.py.
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
from erpsync_tui.engine.eligibility import bulk_eligible
from erpsync_tui.engine.matching import pair_before_sync
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.store import open_database

SITES = ("cloud", "local", "fresh")


def customer(i: int, *, territory: str = "Germany") -> dict[str, Any]:
    return {"customer_name": f"Bench Customer {i:06d}", "customer_type": "Company", "customer_group": "Commercial",
            "territory": territory, "email_id": f"c{i}@example.com"}


def serve_sites(docs: int, differ_percent: float, latency_ms: float, ready: Any, info: Any, stop: Any) -> None:
    from erpsync_tui.sim import SimCluster

    differ_every = max(1, round(100 / differ_percent)) if differ_percent > 0 else 0
    with SimCluster(list(SITES), seed=7, latency_ms=latency_ms) as cluster:
        for site, order in (("cloud", range(docs)), ("local", reversed(range(docs)))):
            store = cluster[site].store
            with store.bulk():
                for i in order:
                    differs = site == "local" and differ_every and i % differ_every == 0
                    store.insert("Customer", customer(i, territory="Japan" if differs else "Germany"),
                                 "Administrator")
        for name in SITES:
            site = cluster[name]
            info[name] = (site.url, site.api_key, site.api_secret)
        ready.set()
        stop.wait()


def make_engine(info: dict[str, tuple[str, str, str]], db_path: Path, target: str) -> SyncEngine:
    urls = {"cloud": info["cloud"], "local": info[target]}
    sites = {name: {"url": urls[name][0], "max_concurrency": 32, "requests_per_second": 100000,
                    "timeout_seconds": 60} for name in ("cloud", "local")}
    config = AppConfig.model_validate({"sites": sites, "sync": {
        "doctypes": ["Customer"], "concurrency": 32, "batch_size": 500, "conflict_resolution": "cloud_wins"}})
    connectors = {name: FrappeConnector(name, config.sites[name], urls[name][1], urls[name][2])
                  for name in ("cloud", "local")}
    return SyncEngine(config, open_database(f"sqlite:///{db_path}"), connectors)


async def close(engine: SyncEngine) -> None:
    for connector in engine.connectors.values():
        await connector.aclose()
    engine.db.dispose()


async def pairing_alone(info: dict[str, tuple[str, str, str]], db_path: Path, *, as_full_sync: bool,
                        ) -> tuple[float, int]:
    """The matching pass alone: by the key fields only, or as a full sync runs it for a doctype whose list rows are
    whole documents (every field listed, identical pairs recorded as synced with their base)."""
    engine = make_engine(info, db_path, "local")
    try:
        whole = None
        if as_full_sync:
            assert await bulk_eligible(engine, "Customer")

            async def whole(site: str, row: dict[str, Any]) -> bool:
                return True  # Customer rows are whole documents on the simulator (bulk_eligible checked the meta)
        started = time.perf_counter()
        plan = await pair_before_sync(engine, "Customer", whole)
        return len(plan.pairs) / (time.perf_counter() - started), len(plan.pairs)
    finally:
        await close(engine)


async def first_contact(info: dict[str, tuple[str, str, str]], db_path: Path) -> tuple[float, Any]:
    engine = make_engine(info, db_path, "local")
    try:
        started = time.perf_counter()
        summary = await full_sync(engine)
        return summary.paired / (time.perf_counter() - started), summary
    finally:
        await close(engine)


async def plain_sync(info: dict[str, tuple[str, str, str]], db_path: Path) -> tuple[float, Any]:
    engine = make_engine(info, db_path, "fresh")
    try:
        started = time.perf_counter()
        summary = await full_sync(engine, direction="cloud_to_local")
        return summary.processed / (time.perf_counter() - started), summary
    finally:
        await close(engine)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--differ-percent", type=float, default=1.0)
    args = parser.parse_args(argv)

    ctx = mp.get_context("spawn")
    manager = ctx.Manager()
    info, ready, stop = manager.dict(), ctx.Event(), ctx.Event()
    child = ctx.Process(target=serve_sites, args=(args.docs, args.differ_percent, args.latency_ms, ready, info,
                                                  stop), daemon=True)
    child.start()
    try:
        if not ready.wait(600):
            raise SystemExit("the simulator did not start")
        sites = dict(info)
        with tempfile.TemporaryDirectory() as tmp:
            pair_rate, pairs = asyncio.run(pairing_alone(sites, Path(tmp) / "pairing.db", as_full_sync=False))
            whole_rate, _ = asyncio.run(pairing_alone(sites, Path(tmp) / "pairing2.db", as_full_sync=True))
            contact_rate, contact = asyncio.run(first_contact(sites, Path(tmp) / "contact.db"))
            plain_rate, plain = asyncio.run(plain_sync(sites, Path(tmp) / "plain.db"))
    finally:
        stop.set()
        child.join(30)
    created = contact.outcomes.get("created", 0)
    print(f"documents on each site: {args.docs} (latency {args.latency_ms:g} ms per request, "
          f"{args.differ_percent:g}% differing)")
    print(f"pairing pass alone:     {pair_rate:9.1f} docs paired/s  ({pairs} pairs; listed by the key fields)")
    print(f"  as a full sync runs it: {whole_rate:7.1f} docs paired/s  (every field listed, identical pairs recorded "
          "as synced)")
    print(f"first contact, whole:   {contact_rate:9.1f} docs paired/s  ({contact.paired} paired, {created} created, "
          f"{contact.writes} writes by the policy, {contact.failed} failed)")
    print(f"plain full sync:        {plain_rate:9.1f} docs synced/s  ({plain.processed} docs cloud → empty site, "
          f"{plain.failed} failed)")
    print(f"pairing / plain sync:   {pair_rate / plain_rate:9.2f}x (key fields), "
          f"{whole_rate / plain_rate:.2f}x (as in a full sync); first contact / plain sync: "
          f"{contact_rate / plain_rate:.2f}x   (goal: >= 1x)")


if __name__ == "__main__":
    main()

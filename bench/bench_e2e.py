"""Benchmark: end-to-end latency from a site's webhook to the document written on the other site.

    python bench/bench_e2e.py [--docs 60] [--gap-ms 100]

Two simulator sites and the engine (with its webhook receiver and queue loop) run in this process, the
sites' Webhook doctype pointing at the receiver. At low load (one insert every --gap-ms), each insert on
`cloud` fires its webhook; the time until the document exists on `local` is one sample. Prints p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from erpsync_tui.demo import demo_config, make_engine
from erpsync_tui.secrets import register_secret
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import open_database


async def measure(docs: int, gap_ms: float) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp, SimCluster(["cloud", "local"], seed=11) as cluster:
        config = demo_config(cluster, Path(tmp) / "state.db")
        db = open_database(config.database.url or "")
        secret = "bench-e2e-webhook-secret"
        register_secret(secret)
        service = make_engine(cluster, config, db, secret)
        await service.start()
        await asyncio.sleep(1.0)  # let the catch-up sync of the (empty) sites finish
        samples = []
        try:
            for i in range(docs):
                before = cluster["local"].count("Customer")
                started = time.perf_counter()
                cluster["cloud"].insert("Customer", {"customer_name": f"Latency {i}", "customer_type": "Company"})
                while cluster["local"].count("Customer") == before:
                    if time.perf_counter() - started > 10:
                        raise SystemExit(f"document {i} did not arrive within 10 s")
                    await asyncio.sleep(0.001)
                samples.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(gap_ms / 1000)
        finally:
            await service.stop()
            db.dispose()
        return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    args = parser.parse_args(argv)
    samples = sorted(asyncio.run(measure(args.docs, args.gap_ms)))
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(f"webhook → written on the other site: p50 {statistics.median(samples):.1f} ms, p99 {p99:.1f} ms, "
          f"max {samples[-1]:.1f} ms over {len(samples)} documents (target p50 < 150 ms)")


if __name__ == "__main__":
    main()

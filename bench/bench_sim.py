"""Benchmark: the request ceiling of one simulated ERPNext site.

    python bench/bench_sim.py [--seconds 5] [--clients 16] [--put-share 0.2] [--seed-n 1000]

Starts one site in a separate process, seeds it, then drives it from this process with keep-alive httpx
clients doing a GET/PUT mix. Other benchmarks can import `measure_ceiling` from here or from
`erpsync_tui.sim.bench`.
"""

from __future__ import annotations

import argparse

from erpsync_tui.sim.bench import measure, measure_ceiling, measure_server

__all__ = ["main", "measure_ceiling"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--put-share", type=float, default=0.2)
    parser.add_argument("--seed-n", type=int, default=1000, help="customers/items seeded before the run")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw-socket server-only measurement")
    args = parser.parse_args(argv)
    if not args.no_raw:
        raw = measure_server(args.seconds, args.clients, args.put_share, args.seed_n)
        print(f"server-only (raw asyncio sockets, client cost ~0): {raw.rps:.0f} req/s"
              f"  p50 {raw.percentile(0.5):.2f} ms  p99 {raw.percentile(0.99):.2f} ms  errors {raw.errors}")
    result = measure(args.seconds, args.clients, args.put_share, args.seed_n)
    print(f"httpx clients: requests {result.requests}  errors {result.errors}  seconds {result.seconds:g}")
    print(f"p50 latency: {result.percentile(0.5):.2f} ms  p99 latency: {result.percentile(0.99):.2f} ms")
    print(result.summary())


if __name__ == "__main__":
    main()

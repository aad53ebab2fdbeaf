"""Webhook receiver throughput: durable accepts per second over loopback with 16 keep-alive connections.

    python bench/bench_webhooks.py [--seconds 10] [--connections 16] [--client auto|wrk|asyncio]

Starts the receiver (erpsync_tui.webhooks.run_for_tests) on a fresh SQLite file in a subprocess, fires
signed webhooks with distinct document names (identical names would just coalesce) for a bounded time,
then counts the rows in queue_item: every 200 must be a stored row.

The load comes from wrk when installed (apt-get install -y wrk; a Lua script cycles through pre-signed
bodies), else from a minimal asyncio HTTP/1.1 client over raw sockets. httpx costs more CPU per request
than the server does; even the raw client takes most of one of the 2 cores, so wrk measures the server best.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from erpsync_tui.webhooks.parsing import SIGNATURE_HEADER, sign

SECRET = "bench-webhook-secret-1234"
MAX_SECONDS = 120.0
START_TIMEOUT_S = 20.0


def webhook_body(index: int) -> bytes:
    # Frappe's json.dumps(data, default=str) format: default separators.
    data = {"doctype": "Customer", "name": f"CUST-{index:08d}", "modified": "2024-05-01 10:00:00.000000",
            "event": "on_update"}
    return json.dumps(data).encode()


def raw_request(host: str, port: int, index: int) -> bytes:
    body = webhook_body(index)
    head = (f"POST /webhook/cloud HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{SIGNATURE_HEADER}: {sign(body, SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


# ------------------------------------------------------------------------------------------ receiver process


def start_receiver(db_url: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET}
    proc = subprocess.Popen(
        [sys.executable, "-m", "erpsync_tui.webhooks.run_for_tests", "--db", db_url, "--port", "0"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("READY "):
            return proc, line.split()[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("receiver did not start")


def stop_receiver(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def count_rows(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM queue_item").fetchone()[0])


# ------------------------------------------------------------------------------------------ asyncio client


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def connection_worker(host: str, port: int, counter: list[int], stop_at: float, stats: Stats) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            counter[0] += 1
            request = raw_request(host, port, counter[0])
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            if status == 200:
                stats.latencies.append(time.perf_counter() - started)
            else:
                stats.error(str(status))
    finally:
        writer.close()


async def run_asyncio_load(url: str, seconds: float, connections: int) -> tuple[int, float, list[float]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats, counter = Stats(), [0]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(connection_worker(host, port, counter, stop_at, stats) for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if stats.errors:
        print(f"non-200 answers: {stats.errors}")
    return len(stats.latencies), elapsed, stats.latencies


# ------------------------------------------------------------------------------------------ wrk

WRK_LUA = """
local bodies, sigs, n = {}, {}, 0
local file = io.open("%(bodies)s")
for line in file:lines() do
  local sig, body = line:match("^(%%S+) (.*)$")
  n = n + 1; sigs[n] = sig; bodies[n] = body
end
file:close()
-- Every thread cycles through its own stride of pre-signed bodies, so names never repeat across threads.
local counter = 0
function setup(thread) counter = counter + 1; thread:set("offset", counter) end
local i = 0
function request()
  i = i + 1
  local k = ((i - 1) * %(threads)d + offset - 1) %% n + 1
  return wrk.format("POST", "/webhook/cloud",
    {["Content-Type"] = "application/json", ["%(header)s"] = sigs[k]}, bodies[k])
end
function done(summary, latency, requests)
  io.write(string.format("WRK p50=%%.3f p99=%%.3f requests=%%d errors=%%d non2xx=%%d\\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""


def run_wrk(url: str, seconds: float, connections: int, workdir: Path) -> tuple[int, float, float, float]:
    threads = 2
    count = int(seconds * 20_000)  # more than wrk can send in `seconds`: no body repeats, nothing coalesces
    bodies = workdir / "bodies.txt"
    with bodies.open("w") as out:
        for index in range(1, count + 1):
            body = webhook_body(index)
            out.write(f"{sign(body, SECRET)} {body.decode()}\n")
    script = workdir / "sign.lua"
    script.write_text(WRK_LUA % {"bodies": bodies, "threads": threads, "header": SIGNATURE_HEADER})
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:g}s", "--latency", "-s", str(script),
         url + "/webhook/cloud"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK "))
    fields = dict(item.split("=") for item in line.split()[1:])
    if int(fields["errors"]) or int(fields["non2xx"]):
        print(f"wrk errors={fields['errors']} non-2xx={fields['non2xx']}")
    accepted = int(fields["requests"]) - int(fields["non2xx"])
    return accepted, seconds, float(fields["p50"]), float(fields["p99"])


def check_rows(rows: int, accepted: int, in_flight: int) -> bool:
    """wrk stops at its deadline without counting requests still in flight, though the receiver stored them:
    with wrk, up to one request per connection may be stored yet uncounted. The asyncio client waits for
    every answer, so there rows must equal accepted exactly."""
    return accepted <= rows <= accepted + in_flight


# ------------------------------------------------------------------------------------------ main


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description="webhook receiver throughput")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client", choices=("auto", "wrk", "asyncio"), default="auto",
                        help="load generator; auto = wrk when installed (a Python client competes for the 2 cores)")
    args = parser.parse_args()
    seconds = min(args.seconds, MAX_SECONDS)
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if use_wrk and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        db_path = Path(tmp) / "state.db"
        proc, url = start_receiver(f"sqlite:///{db_path}")
        try:
            if use_wrk:
                accepted, elapsed, p50_ms, p99_ms = run_wrk(url, seconds, args.connections, Path(tmp))
                generator = "wrk"
            else:
                accepted, elapsed, latencies = asyncio.run(run_asyncio_load(url, seconds, args.connections))
                p50_ms, p99_ms = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
                generator = "asyncio client"
        finally:
            stop_receiver(proc)
        rows = count_rows(db_path)
    rate = accepted / elapsed
    print(f"load generator: {generator}; {accepted} accepted in {elapsed:.1f} s; rows in queue_item: {rows}")
    ok = check_rows(rows, accepted, args.connections if use_wrk else 0)
    if not ok:
        print(f"MISMATCH: {accepted} accepted but {rows} rows stored")
    elif rows != accepted:
        print(f"{rows - accepted} rows were stored for requests still in flight when wrk stopped counting")
    print(f"webhook receiver: {rate:,.0f} accepts/s, p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms "
          f"({args.connections} connections)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

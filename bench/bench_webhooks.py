"""Webhook receiver throughput: durable accepts per second over loopback, the engine running beside it.

    python bench/bench_webhooks.py [--seconds 10] [--connections 16] [--client auto|wrk|asyncio]
                                   [--only real|bare] [--real-docs 2000] [--site-rps 20] [--latency-ms 5]
                                   [--db postgresql+psycopg://user@host/scratch]

Two servers are measured in turn, each in its own process, the load from another process (wrk):

* **bare** — the in-process baseline of issue #5: a minimal Starlette endpoint (same uvicorn settings) that
  verifies the HMAC signature, parses the JSON and commits one SQLite row (WAL, synchronous=NORMAL) per
  request before answering. It is what "one Python process, one SQLite file" can do on this machine.
* **real** — the product: `erpsync-tui serve` (engine, scheduler, lease heartbeat and the receiver in one
  event loop), configured like the documented example, its two sites simulated in a third process (5 ms
  latency per request). The first `--real-docs` webhooks name documents that exist on `cloud`, so the
  engine beside the receiver creates them on `local` while the load runs (its queue loop wakes on every
  commit); the rest name unknown documents, which the engine looks up and finds missing.

With `--db URL` the real server is measured a second time with that database as its state store (a scratch
database: erpsync's tables are dropped first), and both are printed side by side; the sites' client-side rate
limit is then raised to 100000 requests/s (unless --site-rps is given) so the database sets the engine's pace.

Every webhook names a distinct document (identical names would coalesce), so after the run each 200 must
be a row in queue_item. wrk is used when installed (apt-get install -y wrk; a Lua script cycles through
pre-signed bodies); else a minimal asyncio HTTP/1.1 client over raw sockets, which itself takes most of a
core, so the figures are then lower. Each run is bounded by --seconds (at most 120) and loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from erpsync_tui.webhooks.parsing import SIGNATURE_HEADER, sign

SECRET = "bench-webhook-secret-1234"
MAX_SECONDS = 120.0
START_TIMEOUT_S = 30.0
DOCTYPE = "Customer"
RUN_RECEIVER = Path(__file__).resolve().parents[1] / "tests" / "webhooks" / "run_receiver.py"  # the receiver alone


def webhook_body(name: str) -> bytes:
    # Frappe's json.dumps(data, default=str) format: default separators.
    data = {"doctype": DOCTYPE, "name": name, "modified": "2024-05-01 10:00:00.000000", "event": "on_update"}
    return json.dumps(data).encode()


def synthetic_name(index: int) -> str:
    return f"BENCH-{index:08d}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_tagged_line(proc: subprocess.Popen[str], tag: str, timeout: float = START_TIMEOUT_S) -> str:
    """The rest of the first stdout line starting with `tag ` (the child prints it once ready)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(tag + " "):
            return line[len(tag) + 1 :].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit(f"child process did not print {tag} (exit code {proc.poll()})")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode} before it was healthy")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise SystemExit(f"{url}/health did not answer 200 within {START_TIMEOUT_S:g} s")


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return dict(json.loads(response.read()))


# ------------------------------------------------------------------------------------------ child: sim sites


def sim_role(latency_ms: float) -> None:
    """Two simulated sites; prints `SIM {name: url}`. Reads commands on stdin: `seed N` inserts N customers
    on cloud (without firing its webhooks: the bench sends them) and prints `NAMES [...]`; EOF stops."""
    from erpsync_tui.sim import SimCluster

    with SimCluster(["cloud", "local"], seed=7, latency_ms=latency_ms) as cluster:
        print("SIM " + json.dumps({name: site.url for name, site in cluster.sites.items()}), flush=True)
        for line in sys.stdin:
            command, _, arg = line.strip().partition(" ")
            if command == "seed":
                names = [cluster["cloud"].insert(DOCTYPE, {"customer_name": f"Bench {i}", "customer_type": "Company"},
                                                 fire_webhooks=False)["name"] for i in range(int(arg))]
                print("NAMES " + json.dumps(names), flush=True)
            elif command == "count":
                print("COUNT " + json.dumps({n: s.count(DOCTYPE) for n, s in cluster.sites.items()}), flush=True)


# ------------------------------------------------------------------------------------------ child: bare baseline


def bare_role(db_path: str, port: int) -> None:
    """Issue #5's baseline: verify the signature, commit one SQLite row, answer. Nothing else."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS queue_item (id INTEGER PRIMARY KEY, doctype TEXT, name TEXT, "
                 "payload TEXT, created_at REAL)")

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        given = request.headers.get(SIGNATURE_HEADER, "").encode()
        if not hmac.compare_digest(sign(body, SECRET).encode(), given):
            return JSONResponse({"status": "rejected"}, status_code=401)
        data = json.loads(body)
        conn.execute("BEGIN IMMEDIATE")
        row_id = conn.execute("INSERT INTO queue_item (doctype, name, payload, created_at) VALUES (?, ?, ?, ?)",
                              (data["doctype"], data["name"], body.decode(), time.time())).lastrowid
        conn.execute("COMMIT")
        return JSONResponse({"status": "queued", "id": row_id})

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/webhook/{site}", webhook, methods=["POST"]), Route("/health", health)])
    uvicorn.run(app, host="127.0.0.1", port=port, http="httptools", access_log=False, log_level="warning",
                lifespan="off", server_header=False)


# ------------------------------------------------------------------------------------------ the real server


@dataclass
class Server:
    url: str
    rows: Any  # () -> int: rows stored so far
    report: Any  # () -> list[str]: what else to print
    stop: Any


@contextlib.contextmanager
def bare_server(tmp: Path) -> Iterator[Server]:
    port = free_port()
    db_path = tmp / "bare.db"
    proc = subprocess.Popen([sys.executable, __file__, "--role", "bare", "--bare-db", str(db_path), "--port",
                             str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield Server(url, lambda: count_rows(f"sqlite:///{db_path}", "SELECT count(*) FROM queue_item"), lambda: [],
                     lambda: stop_process(proc))
    finally:
        stop_process(proc)


@contextlib.contextmanager
def receiver_server(tmp: Path) -> Iterator[Server]:
    """The receiver alone (tests/webhooks/run_receiver.py): no engine, for comparison only."""
    db_path = tmp / "state.db"
    proc = subprocess.Popen(
        [sys.executable, str(RUN_RECEIVER), "--db", f"sqlite:///{db_path}", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET})
    try:
        url = read_tagged_line(proc, "READY")
        yield Server(url, lambda: count_rows(f"sqlite:///{db_path}", "SELECT count(*) FROM queue_item"), lambda: [],
                     lambda: stop_process(proc))
    finally:
        stop_process(proc)


@contextlib.contextmanager
def real_server(tmp: Path, args: argparse.Namespace, url: str | None = None) -> Iterator[tuple[Server, list[str]]]:
    """`erpsync-tui serve` with its sites simulated in another process; yields it and the real doc names."""
    sim_log = (tmp / "sim.log").open("w")  # a request cut off when serve stops logs a traceback there
    sim = subprocess.Popen([sys.executable, __file__, "--role", "sim", "--latency-ms", str(args.latency_ms)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sim_log, text=True)
    serve: subprocess.Popen[str] | None = None
    try:
        sites = json.loads(read_tagged_line(sim, "SIM"))
        port = free_port()
        db_url = url or f"sqlite:///{tmp / 'state.db'}"
        fresh_state(db_url)
        config = tmp / "config.yaml"
        site_lines = "".join(f"  {name}:\n    url: {url}\n    requests_per_second: {args.site_rps:g}\n"
                             for name, url in sites.items())
        config.write_text(f"sites:\n{site_lines}sync:\n  doctypes: [Customer, Item, Sales Order]\n"
                          f"webhooks:\n  host: 127.0.0.1\n  port: {port}\n  workers: {args.receiver_workers}\n")
        env = {**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET, "HOME": str(tmp), "XDG_CONFIG_HOME": str(tmp / "cfg"),
               "XDG_DATA_HOME": str(tmp / "data"), "XDG_STATE_HOME": str(tmp / "state"),
               "XDG_CACHE_HOME": str(tmp / "cache"), "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
        for name in sites:  # the simulator's fixed demo credentials
            env[f"ERPSYNC_{name.upper()}_API_KEY"] = f"{name}-demo-key"
            env[f"ERPSYNC_{name.upper()}_API_SECRET"] = f"{name}-demo-secret"
        profile = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        serve = subprocess.Popen(
            [sys.executable, *profile, "-m", "erpsync_tui", "--config", str(config), "--db", db_url, "serve",
             "--log-level", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, serve)
        time.sleep(1.0)  # the engine's catch-up sync of the (empty) sites at start
        assert sim.stdin is not None
        sim.stdin.write(f"seed {args.real_docs}\n")
        sim.stdin.flush()
        names = json.loads(read_tagged_line(sim, "NAMES", timeout=120))
        status = get_json(url + "/status")
        if status.get("engine") != "running":
            raise SystemExit(f"the engine beside the receiver is not running: {status}")

        def report() -> list[str]:
            counts = count_by_status(db_url)
            sim.stdin.write("count\n")  # type: ignore[union-attr]
            sim.stdin.flush()  # type: ignore[union-attr]
            docs = json.loads(read_tagged_line(sim, "COUNT"))
            return [f"engine beside it: webhook items by status {counts}; {docs['local']} of {len(names)} "
                    f"real documents created on local during the run",
                    f"engine beside it: sync_log outcomes {count_outcomes(db_url)}"]

        def stop() -> None:
            assert serve is not None
            stop_process(serve)
            if serve.returncode != 0:
                print(f"serve exited with code {serve.returncode}")

        yield Server(url, lambda: count_rows(db_url, "SELECT count(*) FROM queue_item WHERE kind = 'webhook'"),
                     report, stop), names
    finally:
        if serve is not None:
            stop_process(serve)
        if sim.stdin is not None:
            with contextlib.suppress(OSError):
                sim.stdin.close()
        stop_process(sim)
        sim_log.close()


def _query(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows of a query on a state database (SQLite file or server), through SQLAlchemy."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


def fresh_state(url: str) -> None:
    """An empty state store: SQLite files are new; a server database gets erpsync's tables dropped."""
    if url.startswith("sqlite"):
        return
    from sqlalchemy import create_engine
    from sqlmodel import SQLModel

    import erpsync_tui.store.models  # noqa: F401  (the tables' metadata)

    engine = create_engine(url)
    SQLModel.metadata.drop_all(engine)
    engine.dispose()


def count_rows(url: str, query: str) -> int:
    return int(_query(url, query)[0][0])


def count_outcomes(url: str) -> dict[str, int]:
    rows = _query(url, "SELECT coalesce(outcome, '-') || '/' || coalesce(error_code, '-'), count(*) "
                       "FROM sync_log GROUP BY 1 ORDER BY 2 DESC")
    return {str(key): int(count) for key, count in rows}


def count_by_status(url: str) -> dict[str, int]:
    rows = _query(url, "SELECT status, count(*) FROM queue_item WHERE kind = 'webhook' GROUP BY status")
    return {str(status): int(count) for status, count in rows}


# ------------------------------------------------------------------------------------------ asyncio client


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


def raw_request(host: str, port: int, name: str) -> bytes:
    body = webhook_body(name)
    head = (f"POST /webhook/cloud HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"{SIGNATURE_HEADER}: {sign(body, SECRET)}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def connection_worker(host: str, port: int, names: Iterator[str], stop_at: float, stats: Stats) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            request = raw_request(host, port, next(names))
            started = time.perf_counter()
            writer.write(request)
            status = await read_response(reader)
            if status == 200:
                stats.latencies.append(time.perf_counter() - started)
            else:
                stats.error(str(status))
    finally:
        writer.close()


async def run_asyncio_load(url: str, seconds: float, connections: int, names: Iterator[str]) -> tuple[int, list[float]]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    stats = Stats()
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(connection_worker(host, port, names, stop_at, stats) for _ in range(connections)))
    if stats.errors:
        print(f"non-200 answers: {stats.errors}")
    return len(stats.latencies), stats.latencies


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
WRK_THREADS = 2


def run_wrk(url: str, seconds: float, connections: int, bodies: Path, workdir: Path) -> tuple[int, float, float]:
    script = workdir / "sign.lua"
    script.write_text(WRK_LUA % {"bodies": bodies, "threads": WRK_THREADS, "header": SIGNATURE_HEADER})
    result = subprocess.run(
        ["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds:g}s", "--latency", "-s",
         str(script), url + "/webhook/cloud"],
        capture_output=True, text=True, timeout=seconds + 60, check=True,
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith("WRK "))
    fields = dict(item.split("=") for item in line.split()[1:])
    if int(fields["errors"]) or int(fields["non2xx"]):
        print(f"wrk errors={fields['errors']} non-2xx={fields['non2xx']}")
    accepted = int(fields["requests"]) - int(fields["non2xx"])
    return accepted, float(fields["p50"]), float(fields["p99"])


def write_bodies(path: Path, names: list[str], count: int) -> None:
    """`count` pre-signed bodies: the given names first, then synthetic ones (more than wrk can send)."""
    with path.open("w") as out:
        for index in range(count):
            body = webhook_body(names[index] if index < len(names) else synthetic_name(index))
            out.write(f"{sign(body, SECRET)} {body.decode()}\n")


# ------------------------------------------------------------------------------------------ main


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


@dataclass
class Result:
    label: str
    rate: float
    p50_ms: float
    p99_ms: float
    ok: bool


def measure(label: str, server: Server, names: list[str], args: argparse.Namespace, tmp: Path) -> Result:
    seconds = min(args.seconds, MAX_SECONDS)
    if args.use_wrk:
        bodies = tmp / f"bodies-{label}.txt"
        write_bodies(bodies, names, int(seconds * 20_000))
        accepted, p50_ms, p99_ms = run_wrk(server.url, seconds, args.connections, bodies, tmp)
        in_flight = args.connections
    else:
        sequence = iter(names + [synthetic_name(i) for i in range(len(names), 10_000_000)])
        accepted, latencies = asyncio.run(run_asyncio_load(server.url, seconds, args.connections, sequence))
        p50_ms, p99_ms = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
        in_flight = 0
    extra = server.report()
    server.stop()
    rows = server.rows()
    rate = accepted / seconds
    print(f"[{label}] {accepted} accepted in {seconds:.1f} s; rows in queue_item: {rows}")
    for line in extra:
        print(f"[{label}] {line}")
    # wrk stops at its deadline without counting requests still in flight, though the server stored them:
    # up to one per connection may be stored yet uncounted. The asyncio client waits for every answer.
    ok = accepted <= rows <= accepted + in_flight
    if not ok:
        print(f"[{label}] MISMATCH: {accepted} accepted but {rows} rows stored")
    print(f"[{label}] {rate:,.0f} accepts/s, p50 {p50_ms:.1f} ms, p99 {p99_ms:.1f} ms ({args.connections} connections)")
    return Result(label, rate, p50_ms, p99_ms, ok)


def main() -> None:
    parser = argparse.ArgumentParser(description="webhook receiver throughput")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--client", choices=("auto", "wrk", "asyncio"), default="auto",
                        help="load generator; auto = wrk when installed (a Python client competes for the 2 cores)")
    parser.add_argument("--only", choices=("real", "bare", "receiver"),
                        help="measure one server only (default: bare, then real); receiver = without the engine")
    parser.add_argument("--real-docs", type=int, default=2000,
                        help="webhooks naming documents that exist on cloud (the engine syncs them meanwhile)")
    parser.add_argument("--site-rps", type=float, default=None,
                        help="sites.*.requests_per_second for the engine (the documented default is 20)")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="simulated sites' latency per request")
    parser.add_argument("--receiver-workers", type=int, default=2,
                        help="webhooks.workers for serve: receiver processes beside the engine's (0: in its process)")
    parser.add_argument("--profile", metavar="PATH", help="run serve under cProfile, stats written to PATH")
    parser.add_argument("--role", choices=("sim", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--db", metavar="URL", help="also measure serve on this state database (e.g. "
                        "postgresql+psycopg://…/scratch; its erpsync tables are dropped first) beside SQLite; "
                        "raises --site-rps to 100000 unless given")
    parser.add_argument("--bare-db", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "sim":
        sim_role(args.latency_ms)
        return
    if args.role == "bare":
        bare_role(args.bare_db, args.port)
        return
    if args.site_rps is None:  # with --db: the database, not the sites' client-side limit, sets the engine's pace
        args.site_rps = 100000.0 if args.db else 20.0
    args.use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk") is not None)
    if args.use_wrk and shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    print(f"load generator: {'wrk' if args.use_wrk else 'asyncio client'}, {args.connections} connections, "
          f"{min(args.seconds, MAX_SECONDS):g} s per server; serve with webhooks.workers: {args.receiver_workers}, "
          f"sites.*.requests_per_second {args.site_rps:g}")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp_name:
        tmp = Path(tmp_name)
        if args.only in (None, "bare"):
            (tmp / "bare").mkdir()
            with bare_server(tmp / "bare") as server:
                results.append(measure("bare", server, [], args, tmp / "bare"))
        if args.only == "receiver":
            (tmp / "receiver").mkdir()
            with receiver_server(tmp / "receiver") as server:
                results.append(measure("receiver alone", server, [], args, tmp / "receiver"))
        if args.only in (None, "real"):
            (tmp / "real").mkdir()
            with real_server(tmp / "real", args) as (server, names):
                results.append(measure("real", server, names, args, tmp / "real"))
        if args.db and args.only in (None, "real"):
            (tmp / "real-db").mkdir()
            with real_server(tmp / "real-db", args, url=args.db) as (server, names):
                results.append(measure("real, PostgreSQL", server, names, args, tmp / "real-db"))
    by_label = {r.label: r for r in results}
    if "real" in by_label:
        real = by_label["real"]
        print(f"webhook receiver (erpsync-tui serve, engine beside it): {real.rate:,.0f} accepts/s, "
              f"p50 {real.p50_ms:.1f} ms, p99 {real.p99_ms:.1f} ms — target >= 4,000/s, p99 < 20 ms")
        if "bare" in by_label:
            bare = by_label["bare"]
            print(f"bare Starlette + one SQLite commit: {bare.rate:,.0f} accepts/s, p50 {bare.p50_ms:.1f} ms, "
                  f"p99 {bare.p99_ms:.1f} ms; real/bare throughput {real.rate / bare.rate:.2f}")
        if "real, PostgreSQL" in by_label:
            pg = by_label["real, PostgreSQL"]
            print(f"{'state store':<12}{'accepts/s':>12}{'p50 ms':>9}{'p99 ms':>9}   (serve, same sites, same run)")
            for label, row in (("SQLite", real), ("PostgreSQL", pg)):
                print(f"{label:<12}{row.rate:>12,.0f}{row.p50_ms:>9.1f}{row.p99_ms:>9.1f}")
            print(f"PostgreSQL / SQLite throughput {pg.rate / real.rate:.2f}")
    sys.exit(0 if all(r.ok for r in results) else 1)


if __name__ == "__main__":
    main()

"""Throughput ceiling of one simulated site: the number sync-engine throughput is compared against.

The site runs in its own process (so client and server do not share a GIL); this process drives it with
keep-alive httpx clients doing a GET/PUT mix.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

BENCH_SITE = "bench"


@dataclass
class LoadResult:
    seconds: float
    clients: int
    put_share: float
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        gets = round((1 - self.put_share) * 100)
        return (
            f"sim ceiling: {self.rps:.0f} req/s ({self.clients} clients, {gets}% GET / {100 - gets}% PUT)"
            f"  p50 {self.percentile(0.5):.2f} ms  p99 {self.percentile(0.99):.2f} ms  errors {self.errors}"
        )


def serve_forever(seed_n: int) -> None:
    """Child process body: one seeded site on an ephemeral port; prints its coordinates, serves until killed."""
    from .cluster import SimCluster

    cluster = SimCluster([BENCH_SITE], seed=0)
    cluster[BENCH_SITE].seed(seed_n)
    cluster.start()
    site = cluster[BENCH_SITE]
    print(json.dumps({"url": site.url, "key": site.api_key, "secret": site.api_secret}), flush=True)
    try:
        while cluster.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()


class ServerProcess:
    """Context manager: a sim site in a child process (`python -m erpsync_tui.sim.bench --serve`)."""

    def __init__(self, seed_n: int = 1000) -> None:
        self.seed_n = seed_n
        self.url = ""
        self.auth = ""
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        command = [sys.executable, "-m", "erpsync_tui.sim.bench", "--serve", str(self.seed_n)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            self.__exit__()
            raise RuntimeError("simulator process did not start")
        info = json.loads(line)
        self.url = info["url"]
        self.auth = f"token {info['key']}:{info['secret']}"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


async def run_load(url: str, auth: str, seconds: float, clients: int = 16, put_share: float = 0.2) -> LoadResult:
    """`clients` keep-alive clients, each issuing GET one Customer / PUT one field, for `seconds`."""
    headers = {"Authorization": auth}
    async with httpx.AsyncClient(base_url=url, headers=headers) as probe:
        response = await probe.get("/api/resource/Customer", params={"limit_page_length": 0})
        response.raise_for_status()
        names = [row["name"] for row in response.json()["data"]]
    result = LoadResult(seconds=seconds, clients=clients, put_share=put_share)
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        rng = random.Random(index)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=10) as client:
            while time.perf_counter() < deadline:
                path = f"/api/resource/Customer/{rng.choice(names)}"
                started = time.perf_counter()
                try:
                    if rng.random() < put_share:
                        response = await client.put(path, json={"customer_group": f"Bench {rng.randint(1, 9)}"})
                    else:
                        response = await client.get(path)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.requests += 1
                result.errors += not ok

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return result


async def run_raw_load(url: str, auth: str, seconds: float, clients: int = 16, put_share: float = 0.2) -> LoadResult:
    """The same mix over bare asyncio streams: what the server does when the client costs next to nothing.

    httpx spends more CPU per request than the simulator does, so `run_load` mostly measures the client;
    this figure is the server's own ceiling.
    """
    host, port = url.removeprefix("http://").split(":")
    result = LoadResult(seconds=seconds, clients=clients, put_share=put_share)
    deadline = time.perf_counter() + seconds
    body = b'{"customer_group": "Bench"}'

    async def worker(index: int) -> None:
        rng = random.Random(index)
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.perf_counter() < deadline:
                path = f"/api/resource/Customer/CUST-{rng.randint(1, 1000):05d}"
                started = time.perf_counter()
                if rng.random() < put_share:
                    head = (f"PUT {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
                    writer.write(head.encode() + body)
                else:
                    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode())
                header = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in header.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                result.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.requests += 1
                result.errors += not header.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()

    await asyncio.gather(*(worker(i) for i in range(clients)))
    return result


def measure(seconds: float = 5.0, clients: int = 16, put_share: float = 0.2, seed_n: int = 1000) -> LoadResult:
    with ServerProcess(seed_n) as server:
        return asyncio.run(run_load(server.url, server.auth, seconds, clients, put_share))


def measure_server(seconds: float = 5.0, clients: int = 16, put_share: float = 0.2, seed_n: int = 1000) -> LoadResult:
    """Raw-socket variant: needs seed_n >= 1000 (it addresses CUST-00001..CUST-01000)."""
    with ServerProcess(max(seed_n, 1000)) as server:
        return asyncio.run(run_raw_load(server.url, server.auth, seconds, clients, put_share))


def measure_ceiling(seconds: float, clients: int = 16) -> float:
    """Requests/s one simulated site serves to `clients` keep-alive clients (80% GET / 20% PUT)."""
    return measure(seconds, clients).rps


if __name__ == "__main__":  # python -m erpsync_tui.sim.bench [--serve N]
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        serve_forever(int(sys.argv[2]))
    else:
        print(measure().summary())

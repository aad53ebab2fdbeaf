"""SimCluster: several SimSites served by uvicorn on loopback, all in one background thread and event loop."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from .site import SimSite
from .traffic import TrafficGenerator

log = logging.getLogger(__name__)
START_TIMEOUT_S = 15.0


def _bind(port: int) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every response (headers and body written separately) waits ~40 ms for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # allow a quick restart on a fixed port
    sock.bind(("127.0.0.1", port))
    return sock


class SimCluster:
    def __init__(
        self,
        names: Sequence[str] = ("cloud", "local"),
        *,
        seed: int = 0,
        latency_ms: float = 0.0,
        ports: Sequence[int] | dict[str, int] | None = None,
        persist_dir: str | Path | None = None,
        timezones: Sequence[str] | dict[str, str] | None = None,
        webhook_retry_delays: tuple[float, ...] = (1.0, 4.0),
    ) -> None:
        self.seed = seed
        self.sites: dict[str, SimSite] = {}
        for index, name in enumerate(names):
            self.sites[name] = SimSite(
                name,
                seed=seed,
                timezone=_pick(timezones, name, index, "UTC"),
                persist_path=Path(persist_dir) / f"{name}.sqlite3" if persist_dir else None,
                latency_ms=latency_ms,
                port=int(_pick(ports, name, index, 0)),
                webhook_retry_delays=webhook_retry_delays,
            )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._servers: list[uvicorn.Server] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._traffic: TrafficGenerator | None = None

    def __getitem__(self, name: str) -> SimSite:
        return self.sites[name]

    def __iter__(self) -> Any:
        return iter(self.sites.values())

    def __enter__(self) -> SimCluster:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> SimCluster:
        """Serve every site; returns once all of them listen. Can be called again after stop()."""
        if self.running:
            return self
        sockets: dict[str, socket.socket] = {}
        for site in self.sites.values():
            try:
                sock = _bind(site.port)
            except OSError:
                for bound in sockets.values():  # give back the ports already taken
                    bound.close()
                raise
            site.port = sock.getsockname()[1]
            site.closing = False
            sockets[site.name] = sock
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(sockets,), name="erpsync-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            self.stop()
            raise RuntimeError(f"simulator failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Stop traffic and servers; idempotent."""
        self.stop_traffic()
        thread = self._thread
        if thread is None:
            return
        for site in self.sites.values():
            site.closing = True  # releases hung requests
        loop = self._loop
        if loop is not None and not loop.is_closed():
            def request_exit() -> None:
                for server in self._servers:
                    server.should_exit = True
            try:
                loop.call_soon_threadsafe(request_exit)
            except RuntimeError:
                pass  # the loop already finished
        thread.join(timeout=15)
        self._thread = None

    def close(self) -> None:
        """stop() and close SQLite files."""
        self.stop()
        for site in self.sites.values():
            site.close()

    def _run(self, sockets: dict[str, socket.socket]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sockets))
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            log.exception("simulator loop crashed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _serve(self, sockets: dict[str, socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        self._servers = []
        tasks = []
        for name, sock in sockets.items():
            site = self.sites[name]
            config = uvicorn.Config(
                site.app, http=site.protocol_class(), lifespan="off", log_config=None, log_level="warning",
                access_log=False, timeout_graceful_shutdown=1, timeout_keep_alive=30,
            )
            server = uvicorn.Server(config)
            self._servers.append(server)
            tasks.append(asyncio.create_task(server.serve(sockets=[sock])))
        while not all(s.started for s in self._servers):
            if any(t.done() for t in tasks):
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()  # type: ignore[misc]
                raise RuntimeError("a simulator server exited during startup")
            await asyncio.sleep(0.005)
        for site in self.sites.values():
            site.webhooks.attach(loop)
        self._ready.set()
        try:
            await asyncio.gather(*tasks)
        finally:
            for site in self.sites.values():
                await site.webhooks.detach()
            for sock in sockets.values():
                sock.close()

    # ------------------------------------------------------------------ traffic

    def start_traffic(self, rate_per_s: float, conflict_share: float = 0.2, hostile_share: float = 0.1,
                      lifecycle_share: float = 0.1) -> None:
        """Background edits on all sites (as another user, webhooks on); returns at once. `lifecycle_share` of the
        operations are orders, submits, cancels, amendments, renames and deletes whose webhook is lost."""
        self.stop_traffic()
        self._traffic = TrafficGenerator(
            list(self.sites.values()), rate_per_s, conflict_share=conflict_share, hostile_share=hostile_share,
            lifecycle_share=lifecycle_share, seed=self.seed,
        )
        self._traffic.start()

    def stop_traffic(self) -> None:
        if self._traffic is not None:
            self._traffic.stop()

    @property
    def traffic(self) -> TrafficGenerator | None:
        """The last traffic generator (its `stats` and `log` survive stop_traffic())."""
        return self._traffic

    @property
    def traffic_stats(self) -> dict[str, int]:
        return dict(self._traffic.stats) if self._traffic else {}


def _pick(values: Any, name: str, index: int, default: Any) -> Any:
    if values is None:
        return default
    if isinstance(values, dict):
        return values.get(name, default)
    return values[index] if index < len(values) else default

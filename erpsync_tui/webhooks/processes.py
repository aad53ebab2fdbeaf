"""The receiver in processes of its own (`webhooks.workers: N`), beside the engine's.

One Python process runs one thread of Python at a time: with the receiver in the engine's process, every
webhook waits for the engine's work and the engine for the webhooks (measured: the receiver alone takes
~3,500 webhooks/s, beside the engine ~1,800/s, the process at 100% of one core with the other core idle).
With them, the engine's process starts N receiver processes that each listen on webhooks.host:port
(SO_REUSEPORT: the kernel spreads connections over them) and store events in the same database. The
engine stays the only one to sync; the receivers only store, as the in-process receiver does.

What crosses between the processes, and how:
- configuration, the database URL and the webhook secret: one JSON line on the receiver process's stdin (never argv
  or the environment, which other users can read); the engine keeps that pipe open, so a receiver process sees EOF
  and stops (finishing its requests) when the engine dies, even by SIGKILL;
- "stored" and the receiver's counters: short lines on one shared pipe (each under PIPE_BUF, so lines of
  several receiver processes never interleave) carrying running totals, so a line lost to a full pipe costs nothing;
  each line wakes the engine's queue as the in-process receiver's commit does;
- /metrics: the engine's registry, written by the engine to a file every second that the receiver processes serve;
- /status: the engine's state from its lease row, the queue depth from the database.
A receiver process that exits unexpectedly is started again (at most once a second each).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from erpsync_tui.config import AppConfig
from erpsync_tui.errors import ErrorCode
from erpsync_tui.metrics import Metrics
from erpsync_tui.store.db import Database
from erpsync_tui.store.queries import queue_depth
from erpsync_tui.webhooks.server import bind, http_url

log = logging.getLogger("erpsync.webhooks")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
RESTART_MIN_INTERVAL_S = 1.0
SNAPSHOT_INTERVAL_S = 1.0
SUPERVISE_INTERVAL_S = 0.5


@dataclass
class _ReceiverProcess:
    index: int
    process: subprocess.Popen[bytes]
    started_at: float
    accepted: int = 0  # running totals last reported by this process
    rejected: dict[str, int] = field(default_factory=dict)
    ready: bool = False


def reuseport_supported() -> bool:
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bind_reuseport(host: str, port: int) -> socket.socket:
    """A TCP socket on host:port (0 → an ephemeral port) that other SO_REUSEPORT sockets may share."""
    return bind(host, port, reuseport=True)


class ReceiverProcesses:
    """N receiver processes on one address; `url`, `port`, `running` and `stop()` like a ReceiverHandle."""

    def __init__(
        self,
        config: AppConfig,
        db: Database,
        *,
        webhook_secret: str | None,
        metrics: Metrics,
        on_stored: Callable[[], None] | None,
        log_level: str = "WARNING",
        log_file: Path | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.count = config.webhooks.workers
        self.metrics = metrics
        self.on_stored = on_stored
        self._secret = webhook_secret
        self.secret_configured = bool(webhook_secret)
        self._log_level = log_level
        self._log_file = log_file
        self._processes: dict[int, _ReceiverProcess] = {}
        self._placeholder: socket.socket | None = None
        self._notify_read = self._notify_write = -1
        self._buffer = b""
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._runtime_dir = Path(tempfile.mkdtemp(prefix="erpsync-receiver-"))  # 0700: only we read the metrics
        self.metrics_file = self._runtime_dir / "metrics.prom"
        self.host = config.webhooks.host
        self.port = 0
        self.restarts = 0

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return not self._stopping and any(w.process.poll() is None for w in self._processes.values())

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._processes.values() if w.process.poll() is None]

    # ------------------------------------------------------------------------------ start

    async def start(self) -> ReceiverProcesses:
        if not reuseport_supported():
            raise OSError("webhooks.workers needs SO_REUSEPORT (Linux); set webhooks.workers: 0")
        # Held, never listened on: it reserves the port (and tells us which one port 0 gave) while the receiver
        # processes' own sockets, bound beside it, take the connections.
        self._placeholder = bind_reuseport(self.config.webhooks.host, self.config.webhooks.port)
        self.port = int(self._placeholder.getsockname()[1])
        self._notify_read, self._notify_write = os.pipe()
        os.set_blocking(self._notify_read, False)
        os.set_blocking(self._notify_write, False)
        asyncio.get_running_loop().add_reader(self._notify_read, self._read_notifications)
        await asyncio.to_thread(self._write_snapshot)
        try:
            for index in range(self.count):
                self._processes[index] = self._spawn(index)
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise
        self._tasks = [asyncio.create_task(self._supervise(), name="receiver-processes"),
                       asyncio.create_task(self._snapshot_loop(), name="receiver-metrics")]
        log.info("webhook receiver: %d receiver processes on %s (pids %s)", self.count, self.url,
                 ",".join(map(str, self.pids)))
        return self

    def _spawn(self, index: int) -> _ReceiverProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "erpsync_tui.webhooks.process_main"],
            stdin=subprocess.PIPE, pass_fds=(self._notify_write,), close_fds=True,
        )
        assert process.stdin is not None
        bootstrap = {
            "index": index,
            "config": self.config.model_dump(mode="json"),
            "database": self.db.url,
            "secret": self._secret,
            "port": self.port,
            "notify_fd": self._notify_write,
            "metrics_file": str(self.metrics_file),
            "log_level": self._log_level,
            "log_file": str(self._log_file) if self._log_file else None,
        }
        try:
            process.stdin.write(json.dumps(bootstrap).encode() + b"\n")
            process.stdin.flush()
        except OSError:
            pass  # it died at once; the supervisor reports and restarts it
        return _ReceiverProcess(index, process, time.monotonic())

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all(w.ready for w in self._processes.values()):
            for child in self._processes.values():
                if child.process.poll() is not None:
                    raise RuntimeError(f"webhook receiver process {child.index} exited with code "
                                       f"{child.process.returncode} while starting (see its log lines)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"webhook receiver processes did not start within {START_TIMEOUT_S:g} s")
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------------------ notifications

    def _read_notifications(self) -> None:
        try:
            chunk = os.read(self._notify_read, 65536)
        except OSError:  # BlockingIOError: nothing to read yet
            return
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        stored = False
        for line in lines:
            stored = self._apply(line.decode("ascii", "replace").split()) or stored
        if stored and self.on_stored is not None:
            self.on_stored()

    def _apply(self, parts: list[str]) -> bool:
        """One line from a receiver process: `ready I`, `stored I TOTAL`, or `rejected I REASON TOTAL`."""
        try:
            child = self._processes.get(int(parts[1]))
            if child is None:
                return False
            if parts[0] == "ready":
                child.ready = True
            elif parts[0] == "stored":
                total = int(parts[2])
                if total > child.accepted:
                    self.metrics.accepted(total - child.accepted)
                    child.accepted = total
                return True
            elif parts[0] == "rejected":
                reason, total = parts[2], int(parts[3])
                for _ in range(total - child.rejected.get(reason, 0)):
                    self.metrics.rejected(reason)
                child.rejected[reason] = max(total, child.rejected.get(reason, 0))
        except (IndexError, ValueError):
            log.warning("webhook receiver: unreadable receiver process notification %r code=%s", " ".join(parts)[:80],
                        ErrorCode.WEBHOOK)
        return False

    # ------------------------------------------------------------------------------ supervision

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(SUPERVISE_INTERVAL_S)
            for index, child in list(self._processes.items()):
                code = child.process.poll()
                if code is None or self._stopping:
                    continue
                if time.monotonic() - child.started_at < RESTART_MIN_INTERVAL_S:
                    continue  # restarted less than a second ago: wait, rather than spin on a process that cannot start
                log.error("webhook receiver process %d (pid %d) exited with code %s code=%s; starting it again",
                          index, child.process.pid, code, ErrorCode.WEBHOOK)
                self._processes[index] = self._spawn(index)
                self.restarts += 1

    async def _snapshot_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(SNAPSHOT_INTERVAL_S)
            try:
                await asyncio.to_thread(self._write_snapshot)
            except Exception as exc:  # a stale /metrics is better than a dead receiver
                log.warning("webhook receiver: metrics snapshot failed code=%s: %s", ErrorCode.QUEUE, exc)

    def _write_snapshot(self) -> None:
        with self.db.read() as session:
            self.metrics.set_queue_depth(queue_depth(session).by_status)
        temporary = self.metrics_file.with_suffix(".tmp")
        temporary.write_bytes(self.metrics.render())
        temporary.replace(self.metrics_file)  # atomic: a receiver process never serves half a file

    # ------------------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """SIGTERM every receiver process (each stops accepting, answers what it holds, stores it), wait, then close."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for child in self._processes.values():
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(self._reap)
        if self._notify_read >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._notify_read)
            self._read_notifications()  # the last totals the receiver processes sent as they stopped
            for fd in (self._notify_read, self._notify_write):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._notify_read = self._notify_write = -1
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        for path in (self.metrics_file, self.metrics_file.with_suffix(".tmp")):
            path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._runtime_dir.rmdir()

    def _reap(self) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self._processes.values():
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("webhook receiver process %d did not stop within %g s; killing it code=%s",
                          child.index, STOP_TIMEOUT_S, ErrorCode.WEBHOOK)
                child.process.kill()
                child.process.wait()
            if child.process.stdin is not None:
                with contextlib.suppress(OSError):
                    child.process.stdin.close()


def receiver_process_status(db: Database) -> dict[str, Any]:
    """What a receiver process's /status says of the engine: its state as its lease row tells it."""
    from erpsync_tui.store.control import engine_status

    return {"engine": engine_status(db).mode}

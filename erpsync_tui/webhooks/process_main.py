"""One receiver process (see processes.py): started by the engine, never by hand.

Reads its settings as one JSON line on stdin, listens beside its siblings (SO_REUSEPORT), stores webhooks
exactly as the in-process receiver does, and reports what it stored on the engine's pipe. Stops cleanly on
SIGTERM/SIGINT, and when stdin reaches EOF (the engine is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

REPORT_INTERVAL_S = 0.5
STATUS_INTERVAL_S = 1.0


class ReceiverProcessMetrics:
    """The receiver's side of `Metrics`: counts reported to the engine, /metrics served from its snapshot."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, index: int, notify_fd: int, snapshot: Path) -> None:
        self.index = index
        self.notify_fd = notify_fd
        self.snapshot = snapshot
        self.accepted_total = 0
        self.rejected_total: dict[str, int] = {}
        self._report_scheduled = False  # one line per loop turn, however many requests it answered
        self.behind = False  # a line was refused by a full pipe; lines carry totals, so a resend catches up

    def accepted(self, count: int = 1) -> None:
        """Called once a request's row is stored: the engine hears of it (and wakes) within this loop turn."""
        self.accepted_total += count
        if not self._report_scheduled:
            self._report_scheduled = True
            asyncio.get_running_loop().call_soon(self.stored)

    def rejected(self, reason: str) -> None:
        self.rejected_total[reason] = self.rejected_total.get(reason, 0) + 1
        self.send(f"rejected {self.index} {reason} {self.rejected_total[reason]}")

    def set_queue_depth(self, _by_status: Any) -> None:
        """The engine refreshes the queue depth in its snapshot."""

    def render(self) -> bytes:
        try:
            return self.snapshot.read_bytes()
        except OSError:
            return b""

    def stored(self) -> None:
        self._report_scheduled = False
        self.send(f"stored {self.index} {self.accepted_total}")

    def flush(self) -> None:
        """Resend what a full pipe refused; totals always, so the engine's counters catch up."""
        self.behind = False
        lines = [f"stored {self.index} {self.accepted_total}"]
        lines += [f"rejected {self.index} {reason} {total}" for reason, total in self.rejected_total.items()]
        for line in lines:
            self.send(line)

    def send(self, line: str) -> None:
        try:
            os.write(self.notify_fd, line.encode("ascii") + b"\n")  # < PIPE_BUF: never interleaved with a sibling
        except BlockingIOError:
            self.behind = True
        except OSError:
            pass  # the engine is gone; stdin's EOF stops us


async def _run(bootstrap: dict[str, Any], stop: asyncio.Event) -> None:
    from erpsync_tui.config import AppConfig
    from erpsync_tui.store import open_database
    from erpsync_tui.webhooks.app import create_app
    from erpsync_tui.webhooks.processes import bind_reuseport, receiver_process_status
    from erpsync_tui.webhooks.server import serve_receiver

    config = AppConfig.model_validate(bootstrap["config"])
    db = await asyncio.to_thread(open_database, bootstrap["database"])
    index = int(bootstrap["index"])
    metrics = ReceiverProcessMetrics(index, int(bootstrap["notify_fd"]), Path(bootstrap["metrics_file"]))
    status: dict[str, Any] = await asyncio.to_thread(receiver_process_status, db)
    app = create_app(config, db, webhook_secret=bootstrap.get("secret"), status_provider=lambda: status,
                     metrics=metrics)  # type: ignore[arg-type]
    sock = bind_reuseport(config.webhooks.host, int(bootstrap["port"]))
    handle = await serve_receiver(app, config.webhooks.host, 0, sock=sock)
    metrics.send(f"ready {index}")

    async def refresh() -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            with contextlib.suppress(Exception):
                status.update(await asyncio.to_thread(receiver_process_status, db))
            if metrics.behind:
                metrics.flush()

    refresher = asyncio.create_task(refresh())
    try:
        await stop.wait()
    finally:
        refresher.cancel()
        await handle.stop()  # stops accepting, answers and stores what it holds
        metrics.flush()
        db.dispose()


def _stop_on_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    # The raw descriptor, not sys.stdin: a daemon thread blocked inside a buffered reader aborts the
    # interpreter at exit ("could not acquire lock for <stdin>").
    with contextlib.suppress(OSError):
        while os.read(0, 4096):
            pass
    with contextlib.suppress(RuntimeError):  # the loop already closed: we are exiting anyway
        loop.call_soon_threadsafe(stop.set)


async def _main(bootstrap: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    threading.Thread(target=_stop_on_eof, args=(loop, stop), name="engine-watch", daemon=True).start()
    await _run(bootstrap, stop)


def _read_line(fd: int) -> bytes:
    """One line from `fd`, byte by byte: nothing past it is consumed (the rest is watched for EOF)."""
    line = bytearray()
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return bytes(line)


def main() -> None:
    line = _read_line(0)
    if not line:
        sys.exit(2)  # started by hand, or the engine died before it could say anything
    bootstrap = json.loads(line)
    from erpsync_tui.logsetup import configure_logging
    from erpsync_tui.secrets import register_secret

    if bootstrap.get("secret"):
        register_secret(bootstrap["secret"])
    log_file = bootstrap.get("log_file")
    # Watched, not rotating: the engine's process rotates the shared file; a receiver process reopens it after a move.
    configure_logging(bootstrap.get("log_level") or "WARNING", Path(log_file) if log_file else None, watched=True)
    asyncio.run(_main(bootstrap))


if __name__ == "__main__":
    main()

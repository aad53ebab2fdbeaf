"""Running the receiver with uvicorn inside the caller's event loop (the engine daemon's, or a test's).

The daemon owns the process's signals and logging, so uvicorn installs no signal handlers and leaves
logging configuration alone. We bind the socket ourselves: a bind error then surfaces as an OSError in
the caller instead of uvicorn's `sys.exit(1)`, and port 0 gives an ephemeral port we can read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would replace SIGINT/SIGTERM handlers and re-raise them on exit; the daemon owns signals.
        yield


def bind(host: str, port: int, *, reuseport: bool = False) -> socket.socket:
    """A non-blocking TCP socket bound to host:port (0 → ephemeral); `reuseport` lets sibling processes share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP; without it
    # every response (headers and body are written separately) can wait ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # quick restart on a fixed port
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ReceiverHandle:
    """A running receiver: its bound address, and `stop()`."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None], sock: socket.socket,
                 *, secret_configured: bool | None = None) -> None:
        self._server = server
        self.secret_configured = secret_configured  # None: not a receiver app of ours (health cannot tell)
        self._task = task
        self._sock = sock
        address = sock.getsockname()
        self.host: str = address[0]
        self.port: int = address[1]

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (their events are stored), then close. Idempotent."""
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S)
        except TimeoutError:
            self._server.force_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, STOP_TIMEOUT_S)
        except Exception:
            pass  # the server already failed; its error was logged by uvicorn
        finally:
            self._sock.close()


async def serve_receiver(app: ASGIApp, host: str, port: int, *, log_level: str = "warning",
                         sock: socket.socket | None = None) -> ReceiverHandle:
    """Serve `app` on host:port (0 → an ephemeral port), or on `sock` already bound, as a task of the running
    loop; returns once listening."""
    sock = sock if sock is not None else bind(host, port)
    config = uvicorn.Config(
        app,
        log_config=None,  # keep the daemon's logging (and its secret redaction) as it is
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=STOP_TIMEOUT_S,
        server_header=False,
    )
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="webhook-receiver")
    try:
        await _wait_started(server, task)
    except BaseException:
        server.should_exit = True
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        sock.close()
        raise
    receiver = getattr(getattr(app, "state", None), "receiver", None)
    secret_configured = None if receiver is None else receiver.secret is not None
    return ReceiverHandle(server, task, sock, secret_configured=secret_configured)


async def _wait_started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while not server.started:
        if task.done():
            error = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"webhook receiver failed to start: {error!r}")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"webhook receiver did not start within {START_TIMEOUT_S:g} s")
        await asyncio.sleep(0.01)

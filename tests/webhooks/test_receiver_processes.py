"""`webhooks.workers`: receiver processes beside the engine's, over real loopback HTTP and a real SQLite file."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from erpsync_tui.metrics import Metrics
from erpsync_tui.store import Database
from erpsync_tui.webhooks.processes import ReceiverProcesses, reuseport_supported

from .conftest import SECRET, frappe_body, make_config, queue_rows, signed

pytestmark = pytest.mark.skipif(not reuseport_supported(), reason="receiver processes need SO_REUSEPORT (Linux)")


class Woken:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
async def receivers(db: Database) -> AsyncIterator[tuple[ReceiverProcesses, Metrics, Woken]]:
    metrics, woken = Metrics(), Woken()
    pool = ReceiverProcesses(make_config(port=0, workers=2), db, webhook_secret=SECRET, metrics=metrics,
                           on_stored=woken)
    await pool.start()
    yield pool, metrics, woken
    await pool.stop()


async def _eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (a zombie has exited: nobody may have reaped it yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def test_receiver_processes_store_every_event_wake_the_engine_and_feed_its_metrics(
    receivers: tuple[ReceiverProcesses, Metrics, Woken], db: Database
) -> None:
    pool, metrics, woken = receivers
    assert len(pool.pids) == 2 and os.getpid() not in pool.pids
    # Separate clients (connections): the kernel spreads connections, not requests, over the receiver processes.
    clients = [httpx.AsyncClient(base_url=pool.url, timeout=20) for _ in range(8)]
    try:
        bodies = [frappe_body(name=f"W-{i:04d}") for i in range(200)]
        answers = await asyncio.gather(*(clients[i % 8].post("/webhook/cloud", content=body, headers=signed(body))
                                         for i, body in enumerate(bodies)))
        refused = await clients[0].post("/webhook/cloud", content=bodies[0], headers=signed(bodies[0], "wrong"))
    finally:
        for client in clients:
            await client.aclose()
    assert [a.status_code for a in answers] == [200] * 200
    assert refused.status_code == 401
    assert sorted(row.name for row in queue_rows(db)) == sorted(f"W-{i:04d}" for i in range(200))
    await _eventually(lambda: metrics.webhooks_accepted._value.get() == 200)
    await _eventually(lambda: metrics.webhooks_rejected.labels(reason="bad_signature")._value.get() == 1)
    assert woken.count >= 1


async def test_status_and_metrics_come_from_the_engine(receivers: tuple[ReceiverProcesses, Metrics, Woken]) -> None:
    pool, metrics, _ = receivers
    metrics.set_circuit("cloud", "open")  # something only the engine's registry has
    async with httpx.AsyncClient(base_url=pool.url, timeout=10) as client:
        body = frappe_body(name="M-1")
        assert (await client.post("/webhook/cloud", content=body, headers=signed(body))).status_code == 200
        status = (await client.get("/status")).json()
        assert status["engine"] == "stopped"  # no engine holds the lease in this test
        assert (await client.get("/health")).json()["status"] == "ok"
        await _eventually(lambda: metrics.webhooks_accepted._value.get() == 1)
        await asyncio.sleep(2.5)  # the engine's snapshot is rewritten every second
        exposition = (await client.get("/metrics")).text
    assert 'erpsync_circuit_state{site="cloud"} 2.0' in exposition
    assert "erpsync_webhooks_accepted_total 1.0" in exposition
    assert 'erpsync_queue_depth{status="pending"} 1.0' in exposition


async def test_a_dead_receiver_process_is_started_again(
    receivers: tuple[ReceiverProcesses, Metrics, Woken], db: Database
) -> None:
    pool, _, _ = receivers
    victim = pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    await _eventually(lambda: pool.restarts == 1 and len(pool.pids) == 2 and victim not in pool.pids)
    async with httpx.AsyncClient(base_url=pool.url, timeout=10) as client:
        for i in range(10):
            body = frappe_body(name=f"AFTER-{i}")
            assert (await client.post("/webhook/cloud", content=body, headers=signed(body))).status_code == 200
    assert len(queue_rows(db)) == 10


async def test_stop_ends_every_receiver_process_and_frees_the_port(db: Database) -> None:
    pool = ReceiverProcesses(make_config(port=0, workers=2), db, webhook_secret=SECRET, metrics=Metrics(),
                           on_stored=None)
    await pool.start()
    pids, port = pool.pids, pool.port
    await pool.stop()
    assert not any(_alive(pid) for pid in pids)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nobody holds it any more


def test_receiver_processes_stop_when_the_engine_is_killed(tmp_path: Path) -> None:
    """SIGKILL leaves no stray receivers listening: each receiver process sees EOF on its stdin and stops."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from erpsync_tui.metrics import Metrics
        from erpsync_tui.store import open_database
        from erpsync_tui.webhooks.processes import ReceiverProcesses
        from tests.webhooks.conftest import SECRET, make_config

        async def main():
            db = open_database({f"sqlite:///{tmp_path / 'state.db'}"!r})
            pool = ReceiverProcesses(make_config(port=0, workers=2), db, webhook_secret=SECRET, metrics=Metrics(),
                                   on_stored=None)
            await pool.start()
            print("PIDS", *pool.pids, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
    """)
    engine = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert engine.stdout is not None
        line = engine.stdout.readline()
        assert line.startswith("PIDS"), line
        pids = [int(pid) for pid in line.split()[1:]]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        engine.kill()
        engine.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        engine.kill()

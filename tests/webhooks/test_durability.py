"""A 200 means stored: SIGKILL the receiver the instant the answer arrives, and the event is in the database."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from erpsync_tui.store import open_database

from .conftest import SECRET, frappe_body, queue_rows, signed

START_TIMEOUT_S = 20.0
RUN_RECEIVER = Path(__file__).with_name("run_receiver.py")  # a test helper, not shipped in the package


pytestmark = pytest.mark.backends


@pytest.fixture
def receiver_process(db_url: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    proc = subprocess.Popen(
        [sys.executable, str(RUN_RECEIVER), "--db", db_url, "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "ERPSYNC_WEBHOOK_SECRET": SECRET},
    )
    try:
        yield proc, _wait_ready(proc), db_url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _wait_ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("READY "):
                return line.split()[1]
            if not line:
                break
    raise AssertionError(f"receiver did not start (exit code {proc.poll()})")


def test_event_survives_sigkill_right_after_the_200(receiver_process: tuple[subprocess.Popen[str], str, str]) -> None:
    proc, url, db_url = receiver_process
    body = frappe_body(name="CUST-DURABLE", event="on_update")
    with httpx.Client(timeout=10) as client:
        response = client.post(f"{url}/webhook/cloud", content=body, headers=signed(body))
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown, no chance to flush anything after the answer
    assert response.status_code == 200, response.text
    assert proc.wait(timeout=10) == -signal.SIGKILL
    db = open_database(db_url)
    try:
        [row] = queue_rows(db)
        assert (row.id, row.doctype, row.name, row.payload["event"]) == (response.json()["id"], "Customer",
                                                                        "CUST-DURABLE", "on_update")
    finally:
        db.dispose()


def test_every_acknowledged_event_survives_sigkill_under_load(
    receiver_process: tuple[subprocess.Popen[str], str, str],
) -> None:
    proc, url, db_url = receiver_process
    acknowledged = asyncio.run(_post_until_killed(proc, url, total=200, kill_after=60))
    assert len(acknowledged) >= 60
    db = open_database(db_url)
    try:
        stored = {row.id: row.name for row in queue_rows(db)}
    finally:
        db.dispose()
    missing = {name for item_id, name in acknowledged.items() if stored.get(item_id) != name}
    assert not missing, f"acknowledged but lost: {sorted(missing)[:10]}"


async def _post_until_killed(proc: subprocess.Popen[str], url: str, *, total: int, kill_after: int) -> dict[int, str]:
    """Fire `total` webhooks on 16 connections; SIGKILL the receiver as soon as `kill_after` were answered 200."""
    acknowledged: dict[int, str] = {}
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def one(index: int) -> None:
            name = f"LOAD-{index:05d}"
            body = frappe_body(name=name)
            try:
                response = await client.post(f"{url}/webhook/cloud", content=body, headers=signed(body))
            except httpx.HTTPError:
                return  # the receiver died before answering: not acknowledged, no promise made
            if response.status_code == 200:
                acknowledged[response.json()["id"]] = name
                if len(acknowledged) == kill_after:
                    os.kill(proc.pid, signal.SIGKILL)

        await asyncio.gather(*(one(i) for i in range(total)))
    proc.wait(timeout=10)
    return acknowledged

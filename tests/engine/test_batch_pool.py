"""Full-sync batches in batch processes (sync.workers): the same outcome as in one process, and no worse off
when a process dies. Real spawned processes, the simulator over loopback, one SQLite file shared by all."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import func, select

from erpsync_tui.engine.batch_pool import BatchPool
from erpsync_tui.engine.bulk import full_sync
from erpsync_tui.engine.reconcile import reconcile
from erpsync_tui.engine.sync import SyncEngine
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database
from erpsync_tui.store.models import SyncLog, SyncRecord

from .conftest import EngineFactory


@pytest.fixture
def attach_workers(cluster: SimCluster, db: Database) -> Iterator[Any]:
    made: list[BatchPool] = []

    def attach(engine: SyncEngine, processes: int = 2) -> BatchPool:
        credentials = {name: (site.api_key, site.api_secret) for name, site in cluster.sites.items()}
        workers = BatchPool(engine.config, db.url, credentials, processes)
        engine.batch_pool = workers
        made.append(workers)
        return workers

    yield attach
    for workers in made:
        workers.close()


def count(db: Database, model: Any) -> int:
    with db.read() as s:
        return s.exec(select(func.count()).select_from(model)).one()


async def test_a_full_sync_through_workers_creates_every_document_once_and_records_it(
    cluster: SimCluster, make_engine: EngineFactory, db: Database, attach_workers: Any
) -> None:
    cluster["cloud"].seed(240)
    engine = make_engine(batch_size=40)
    workers = attach_workers(engine)
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert workers.batches >= 6 and not workers.broken  # 240 customers in batches of 40, all run by the workers
    assert summary.failed == 0 and summary.processed == 240 and summary.outcomes["created"] == 240
    assert cluster["local"].count("Customer") == 240
    assert count(db, SyncRecord) == 240 and count(db, SyncLog) >= 240
    report = await reconcile(engine, "Customer")
    assert not report.differences
    again = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert again.writes == 0 and again.processed == 240  # a second pass writes nothing


async def test_edits_after_a_worker_sync_propagate_through_workers(
    cluster: SimCluster, make_engine: EngineFactory, attach_workers: Any
) -> None:
    cluster["cloud"].seed(60)
    engine = make_engine(batch_size=20)
    attach_workers(engine)
    await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    name = cluster["cloud"].all("Customer")[0]["name"]
    cluster["cloud"].update("Customer", name, {"customer_name": "Renamed [red]x"})
    summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert summary.outcomes["updated"] == 1 and summary.failed == 0
    assert any(doc["customer_name"] == "Renamed [red]x" for doc in cluster["local"].all("Customer"))


async def test_a_dead_worker_costs_speed_not_documents(
    cluster: SimCluster, make_engine: EngineFactory, attach_workers: Any, caplog: pytest.LogCaptureFixture
) -> None:
    cluster["cloud"].seed(120)
    engine = make_engine(batch_size=30)
    workers = attach_workers(engine, processes=1)
    for future in workers.start():
        os.kill(future.result(timeout=60), signal.SIGKILL)  # the worker is gone before the first batch
    with caplog.at_level(logging.WARNING, logger="erpsync.engine"):
        summary = await full_sync(engine, doctypes=["Customer"], direction="cloud_to_local")
    assert workers.broken and workers.batches == 0
    assert "ERP010" in caplog.text and "engine's process" in caplog.text
    assert summary.failed == 0 and summary.outcomes["created"] == 120
    assert cluster["local"].count("Customer") == 120

"""A webhook that names the version we last synced (the echo of our own write) is settled without a request."""

from __future__ import annotations

from sqlmodel import select

from erpsync_tui.engine.sync import Outcome
from erpsync_tui.engine.worker import QueueWorker
from erpsync_tui.sim import SimCluster
from erpsync_tui.store import Database, queue
from erpsync_tui.store.models import QueueItem, QueueKind, QueueStatus, SyncLog


def webhook(db: Database, site: str, name: str, modified: str, event: str = "on_update") -> int:
    with db.write() as s:
        item = queue.enqueue(s, kind=QueueKind.WEBHOOK, site=site, doctype="Customer", name=name,
                             payload={"event": event, "modified": modified})
        return int(item.id or 0)


def requests(engine) -> int:
    return sum(c.stats.requests for c in engine.connectors.values())


def status(db: Database, item_id: int) -> str:
    with db.read() as s:
        item = s.get(QueueItem, item_id)
        assert item is not None
        return item.status


async def test_echo_of_our_own_write_needs_no_request(cluster: SimCluster, make_engine, db: Database) -> None:
    engine = make_engine()
    doc = cluster["cloud"].insert("Customer", {"customer_name": "Echo Ltd", "customer_type": "Company"},
                                  fire_webhooks=False)
    assert (await engine.sync_document("Customer", "cloud", doc["name"])).outcome == Outcome.CREATED
    local_name = engine.state.translate_name("Customer", "cloud", doc["name"], "local")
    assert local_name is not None
    copy = cluster["local"].get("Customer", local_name)
    worker = QueueWorker(engine)
    before = requests(engine)
    item = webhook(db, "local", local_name, str(copy["modified"]))
    await worker.run_once()
    assert status(db, item) == QueueStatus.DONE and requests(engine) == before  # settled from the state alone
    assert engine.echoes_skipped == 1  # counted (status, /metrics), not stored as a log row
    with db.read() as s:
        last = s.exec(select(SyncLog).order_by(SyncLog.id.desc())).first()  # type: ignore[union-attr]
    assert last is not None and "echo" not in last.message


async def test_a_changed_version_or_a_delete_takes_the_full_path(cluster: SimCluster, make_engine,
                                                                db: Database) -> None:
    engine = make_engine()
    doc = cluster["cloud"].insert("Customer", {"customer_name": "Changing Ltd", "customer_type": "Company"},
                                  fire_webhooks=False)
    await engine.sync_document("Customer", "cloud", doc["name"])
    local_name = engine.state.translate_name("Customer", "cloud", doc["name"], "local")
    assert local_name is not None
    worker = QueueWorker(engine)
    edited = cluster["local"].update("Customer", local_name, {"mobile_no": "+49 1"}, fire_webhooks=False)
    webhook(db, "local", local_name, str(edited["modified"]))
    await worker.run_once()
    assert cluster["cloud"].get("Customer", doc["name"])["mobile_no"] == "+49 1"  # the edit went across

    before = requests(engine)
    webhook(db, "local", local_name, str(cluster["local"].get("Customer", local_name)["modified"]), event="")
    await worker.run_once()
    assert requests(engine) > before  # an event without a name could be anything: the full path

    synced = cluster["cloud"].get("Customer", doc["name"])
    cluster["cloud"].delete("Customer", doc["name"], fire_webhooks=False)
    before = requests(engine)
    webhook(db, "cloud", doc["name"], str(synced["modified"]), event="on_trash")  # a delete keeps `modified`
    await worker.run_once()
    assert requests(engine) > before  # fetched: the delete was seen, not skipped as a known version

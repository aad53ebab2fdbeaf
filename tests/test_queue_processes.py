"""Queue claims and operator-action claims from several processes at once, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlmodel import select

from erpsync_tui.store import open_database, queue
from erpsync_tui.store.control import claim_actions, submit_action
from erpsync_tui.store.models import OperatorAction

pytestmark = pytest.mark.backends

# Claims until the queue is empty; prints the ids it claimed as one JSON line.
_CLAIMER = """
import json, sys
from erpsync_tui.store import open_database, queue
from erpsync_tui.store.control import claim_actions
db = open_database(sys.argv[1])
owner, what = sys.argv[2], sys.argv[3]
got = []
while True:
    if what == "items":
        batch = [item.id for item in queue.claim(db, owner, limit=5)]
    else:
        batch = [action.id for action in claim_actions(db, owner, limit=5)]
    if not batch:
        break
    got.extend(batch)
db.dispose()
print(json.dumps(got))
"""


def _claim_in_processes(url: str, what: str, processes: int = 4) -> list[list[int]]:
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMER, url, f"p{n}", what], stdout=subprocess.PIPE,
                              text=True) for n in range(processes)]
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        out.append(json.loads(stdout))
    return out


def test_queue_items_are_claimed_once_by_many_processes(db_url: str) -> None:
    db = open_database(db_url)
    with db.write() as s:
        ids = [queue.enqueue(s, site="cloud", doctype="Item", name=f"I{i}").id for i in range(300)]
    claimed = [i for batch in _claim_in_processes(db_url, "items") for i in batch]
    db.dispose()
    assert sorted(claimed) == sorted(ids)  # every item once, none twice


def test_operator_actions_are_claimed_once_by_many_processes(db_url: str) -> None:
    db = open_database(db_url)
    ids = [submit_action(db, "sync_now", actor="ops", host="box") for _ in range(150)]
    per_process = _claim_in_processes(db_url, "actions")
    claimed = [i for batch in per_process for i in batch]
    with db.read() as s:
        owners = {row.id: row.processed_by for row in s.exec(select(OperatorAction)).all()}
    db.dispose()
    assert sorted(claimed) == sorted(ids)
    for n, batch in enumerate(per_process):
        assert all(owners[i] == f"p{n}" for i in batch)
    assert claim_actions(open_database(db_url), "late") == []


def test_concurrent_events_for_one_document_coalesce_into_one_item(db_url: str) -> None:
    """Two receivers (here 8 threads with their own connections) storing the same document's event at once:
    enqueue reads for a pending twin and then inserts, atomic only while writers run one at a time — on
    PostgreSQL through the writer lock (store/postgres.py); without it READ COMMITTED let each insert its own."""
    import threading

    from erpsync_tui.store.models import QueueItem

    dbs = [open_database(db_url) for _ in range(8)]
    barrier = threading.Barrier(len(dbs))
    errors: list[BaseException] = []

    def store(db) -> None:
        barrier.wait()
        try:
            with db.write() as s:
                queue.enqueue(s, site="cloud", doctype="Customer", name="C-SAME", payload={"event": "on_update"})
        except BaseException as exc:
            errors.append(exc)

    for _round in range(10):
        threads = [threading.Thread(target=store, args=(db,)) for db in dbs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        with dbs[0].read() as s:
            pending = s.exec(select(QueueItem).where(QueueItem.status == "pending")).all()
        assert errors == [] and len(pending) == 1, (errors, [(i.id, i.coalesced) for i in pending])
        queue.discard(dbs[0], [pending[0].id])
    for db in dbs:
        db.dispose()

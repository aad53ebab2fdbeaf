"""`SyncState`'s batch writes (the bulk full sync's state): the records they make are the ones a lost create is
found by, each name lands on its own record, and a side already recorded as it is stays untouched."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import select

from erpsync_tui.engine import documents as docs
from erpsync_tui.engine.creates import owner_of_copy
from erpsync_tui.engine.outcomes import Fetched
from erpsync_tui.engine.records import Side
from erpsync_tui.engine.sync_state import SyncState
from erpsync_tui.store import Database
from erpsync_tui.store.models import CreateAttempt, RecordStatus, SyncName, SyncRecord


def intent(name: str, email: str) -> tuple[Side, dict, str]:
    canonical = docs.normalise({"customer_name": name, "customer_type": "Company", "email_id": email})
    content_hash = docs.content_hash(canonical)
    return Side("cloud", name, content_hash, "2026-01-01 00:00:00.000000"), canonical, content_hash


def test_batch_intents_get_their_own_records_after_existing_and_deleted_ones(db: Database) -> None:
    state = SyncState(db)
    first = state.begin_create("Customer", *intent("A", "a@x.example"))
    second = state.begin_create("Customer", *intent("B", "b@x.example"))
    state.discard_creates([second.record_id])  # the largest id is free again
    intents = [intent(f"C{i}", f"c{i}@x.example") for i in range(5)]
    created, left_out = state.begin_create_many("Customer", intents, target="local")
    assert left_out == []
    ids = [created[side.name].record_id for side, _, _ in intents]
    assert len(set(ids)) == 5 and first.record_id not in ids
    for side, canonical, _ in intents:
        view = state.view(created[side.name].record_id)
        assert view is not None and view.status == RecordStatus.CREATING and view.base == canonical
        assert view.sides == {"cloud": side}
        assert state.find("cloud", "Customer", side.name).record_id == view.record_id
    with db.read() as session:
        record_ids = [r.id for r in session.exec(select(SyncRecord)).all()]
        attempts = session.exec(select(CreateAttempt)).all()
    assert sorted(record_ids) == sorted([first.record_id, *ids])
    assert {a.record_id: a.payload_hash for a in attempts} == {
        created[side.name].record_id: content_hash for side, _, content_hash in intents}


def test_a_batch_intent_leaves_what_a_lost_create_is_recognised_by(db: Database) -> None:
    """The hash of what was sent and its content (the edited-copy likeness), for every record of the batch."""
    state = SyncState(db)
    intents = [intent(f"C{i}", f"c{i}@x.example") for i in range(3)]
    created, _ = state.begin_create_many("Customer", intents, target="local")
    pending = {p.record.record_id: p for p in state.pending_creates("Customer", "local")}
    for side, canonical, content_hash in intents:
        entry = pending[created[side.name].record_id]
        assert entry.hashes == [content_hash] and entry.payloads == [canonical]
        assert state.creating_with_hash("Customer", "local", content_hash).record_id == entry.record.record_id
    # A copy of C1 edited on the target after the lost answer is still told apart from the others by likeness.
    edited = {**intents[1][1], "email_id": "edited@x.example"}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    copy = Fetched("local", {"name": "CUST-9", "creation": stamp}, edited, docs.content_hash(edited))
    owner = owner_of_copy(copy, list(pending.values()), "UTC")
    assert owner is not None and owner.record.record_id == created["C1"].record_id


def test_mark_synced_many_records_both_sides_and_leaves_an_unchanged_side_alone(db: Database) -> None:
    state = SyncState(db)
    intents = [intent(f"C{i}", f"c{i}@x.example") for i in range(2)]
    created, _ = state.begin_create_many("Customer", intents, target="local")
    with db.read() as session:
        before = {n.name: n.synced_at for n in session.exec(select(SyncName)).all()}
    (s0, c0, h0), (_, c1, h1) = intents
    moved = Side("cloud", "C1", h1, "2026-01-02 00:00:00.000000")  # C1 was read again at a newer `modified`
    state.mark_synced_many("Customer", [
        (created["C0"].record_id, c0, h0, [s0, Side("local", "L0", h0, "m0")]),
        (created["C1"].record_id, c1, h1, [moved, Side("local", "L1", h1, "m1")]),
    ], [{"message": "created: Customer C0", "name": "C0"}, {"message": "created: Customer C1", "name": "C1"}])
    for name, local in (("C0", "L0"), ("C1", "L1")):
        view = state.view(created[name].record_id)
        assert view.status == RecordStatus.SYNCED and set(view.sides) == {"cloud", "local"}
        assert view.sides["local"].name == local
    assert state.view(created["C1"].record_id).sides["cloud"].modified == "2026-01-02 00:00:00.000000"
    with db.read() as session:
        rows = {n.name: n for n in session.exec(select(SyncName)).all()}
        assert session.exec(select(CreateAttempt)).all() == []  # paired: the attempts are forgotten
    assert rows["C0"].synced_at == before["C0"]  # recorded exactly so with the intent: not rewritten
    assert rows["C1"].synced_at > before["C1"]
    assert all(row.snapshot is None for row in rows.values())


def test_canonical_json_handed_over_is_stored_once_and_reads_back_equal(db: Database) -> None:
    state = SyncState(db)
    side, canonical, content_hash = intent("Ünïcode ✓", "u@x.example")
    text = docs.canonical_json(canonical)
    created, _ = state.begin_create_many("Customer", [(side, canonical, content_hash)], target="local",
                                         texts=[(canonical, text)])
    rid = created[side.name].record_id
    with db.read() as session:
        conn = session.connection()
        stored = conn.exec_driver_sql("SELECT base FROM sync_record WHERE id = ?", (rid,)).scalar()
        payload = conn.exec_driver_sql("SELECT payload FROM create_attempt WHERE record_id = ?", (rid,)).scalar()
    assert stored == payload == text and docs.hash_of_json(stored) == content_hash
    assert state.view(rid).base == canonical
    assert state.pending_creates("Customer", "local")[0].payloads == [canonical]
    state.mark_synced_many("Customer", [(rid, canonical, content_hash, [side, Side("local", "L", content_hash, "m")])],
                           [], texts=[(canonical, text)])
    assert state.view(rid).base == canonical and state.view(rid).status == RecordStatus.SYNCED

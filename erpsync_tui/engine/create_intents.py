"""Create intents in the sync state: every insert is recorded before it is sent, and what became of it.

A create whose answer was lost (a crash, a timeout) leaves its intent: the next sync of that document finds the
copy on the target by the hash (or content) of what was sent instead of creating a second one. `CreateIntents`
is a mixin of `SyncState` (engine/sync_state.py), which supplies `self.db`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete
from sqlmodel import select

from erpsync_tui.engine.records import AttemptNoted, PendingCreate, RecordView, Side
from erpsync_tui.engine.state_sql import (
    _ATTEMPT,
    _FIND,
    _INSERT_ATTEMPT,
    _INSERT_ATTEMPT_MANY,
    _INSERT_NAME,
    _INSERT_NAME_MANY,
    _INSERT_RECORD,
    _INSERT_RECORDS_MANY,
    _INSERT_RECORDS_WITH_ID_MANY,
    _MAX_RECORD_ID,
    _NAME,
    _PENDING_CREATES,
    _RECORD,
    _SIDE_ON,
    _chunks,
    _name_values,
    _view,
    _views,
)
from erpsync_tui.store import control
from erpsync_tui.store.many import json_texts
from erpsync_tui.store.models import (
    RecordStatus,
    utcnow,
)


class CreateIntents:
    def pending_creates(self, doctype: str, target: str) -> list[PendingCreate]:
        """Creates aimed at `target` that were sent (or about to be) but whose resulting name is not recorded."""
        with self.db.read() as session:
            conn = session.connection()
            pending: dict[int, PendingCreate] = {}
            for record_id, payload_hash, payload, sent_at in conn.execute(
                _PENDING_CREATES, {"doctype": doctype, "target": target}
            ):
                entry = pending.get(record_id)
                if entry is None:
                    view = _view(conn, record_id)
                    if view is None or target in view.sides:
                        continue
                    entry = pending[record_id] = PendingCreate(view, [], [], [])
                entry.hashes.append(payload_hash)
                entry.payloads.append(payload or {})
                entry.sent.append(sent_at)
            return list(pending.values())

    def creating_with_hash(self, doctype: str, target: str, payload_hash: str) -> RecordView | None:
        """A create sent to `target` with exactly this content: the document is our own (the echo or a lost answer)."""
        for pending in self.pending_creates(doctype, target):
            if payload_hash in pending.hashes:
                return pending.record
        return None

    def note_attempt(
        self, record_id: int, doctype: str, target: str, payload_hash: str, payload: dict[str, Any],
        *, fence: str | None = None,
    ) -> AttemptNoted:
        """Record an insert about to be sent (committed before the request goes out), if it still may be sent.

        Not recorded when, meanwhile, another task paired the record with a document on `target` (it
        recognised an earlier attempt's copy), or — with `fence`, the engine lease holder we run under — when
        this engine no longer holds a live lease (a successor took over after a stall): either would make a
        duplicate.
        """
        with self.db.write() as session:
            conn = session.connection()
            if fence is not None and not control.holds_lease(session, fence):
                return AttemptNoted.LEASE_LOST
            if conn.execute(_SIDE_ON, {"rid": record_id, "s": target}).first() is not None:
                return AttemptNoted.ALREADY_PAIRED
            conn.execute(_INSERT_ATTEMPT, {
                "record_id": record_id, "doctype": doctype, "target_site": target, "payload_hash": payload_hash,
                "payload": payload, "sent_at": utcnow(),
            })
            return AttemptNoted.RECORDED

    def begin_create(
        self, doctype: str, source: Side, canonical: dict[str, Any], payload_hash: str
    ) -> RecordView:
        """Record the intent before the insert request: a lost answer can then be recovered, not repeated.

        A record that already existed in CREATING state comes back with `retrying=True`: an earlier attempt
        may have created the document on the target without us hearing the answer.
        """
        with self.db.write() as session:
            conn = session.connection()
            existing = conn.execute(_FIND, {"site": source.site, "doctype": doctype, "name": source.name}).scalar()
            if existing is not None:
                view = _view(conn, existing)
                assert view is not None
                view.retrying = view.status == RecordStatus.CREATING
                return view
            now = utcnow()
            record_id = conn.execute(_INSERT_RECORD, {
                "doctype": doctype, "status": RecordStatus.CREATING, "base": canonical, "base_hash": payload_hash,
                "origin_site": source.site, "created_at": now, "updated_at": now,
            }).scalar_one()
            conn.execute(_INSERT_NAME, _name_values(record_id, doctype, source, now))
            return RecordView(record_id, doctype, RecordStatus.CREATING, canonical, {source.site: source}, now)

    def begin_create_many(
        self, doctype: str, intents: list[tuple[Side, dict[str, Any], str]], *, target: str,
        fence: str | None = None, texts: Iterable[tuple[dict[str, Any], str]] = (),
    ) -> tuple[dict[str, RecordView], list[str]]:
        """`begin_create` for a batch, in one transaction committed before any insert request is sent.

        Each intent is (source side, canonical, payload hash); the records written are exactly what
        `begin_create` writes (CREATING, base = canonical, base_hash = payload hash), so the lost-create recovery
        works the same for both paths. Returns the new records by source name, and the names left out: already
        known (another task got there first) or possibly our own echo (an in-flight create from the other site
        with the same content) — those go the per-document way. `texts`: (canonical, its canonical JSON) pairs
        the caller has already made, stored as they are instead of serialising the documents again.
        """
        created: dict[str, RecordView] = {}
        if not intents:
            return created, []
        with self.db.write() as session:
            conn = session.connection()
            if fence is not None and not control.holds_lease(session, fence):
                return created, [source.name for source, _, _ in intents]  # the per-document path refuses them
            hashes = list({payload_hash for _, _, payload_hash in intents})
            echo_hashes: set[str] = set()
            for chunk in _chunks(hashes):
                rows = conn.execute(select(_RECORD.c.id, _RECORD.c.base_hash).where(
                    _RECORD.c.status == RecordStatus.CREATING, _RECORD.c.doctype == doctype,
                    _RECORD.c.base_hash.in_(chunk))).all()
                views = _views(conn, [rid for rid, _ in rows])
                echo_hashes.update(h for rid, h in rows if rid in views)
            known: set[str] = set()
            for chunk in _chunks([source.name for source, _, _ in intents]):
                known.update(conn.execute(select(_NAME.c.name).where(
                    _NAME.c.site == intents[0][0].site, _NAME.c.doctype == doctype, _NAME.c.name.in_(chunk),
                )).scalars())
            fresh = [(source, canonical, payload_hash) for source, canonical, payload_hash in intents
                     if source.name not in known and payload_hash not in echo_hashes]
            left_out = [source.name for source, _, payload_hash in intents
                        if source.name in known or payload_hash in echo_hashes]
            if fresh:
                now = utcnow()
                memo = json_texts(texts)  # each canonical stored twice, serialised at most once
                rows = [{
                    "doctype": doctype, "status": RecordStatus.CREATING, "base": canonical, "base_hash": payload_hash,
                    "origin_site": source.site, "created_at": now, "updated_at": now,
                } for source, canonical, payload_hash in fresh]
                if conn.dialect.name == "sqlite":
                    # This transaction holds SQLite's write lock (BEGIN IMMEDIATE): nobody else can insert until it
                    # commits, so the ids after the largest one are ours to hand out — one executemany, no
                    # statement per row to learn each id.
                    first = (conn.execute(_MAX_RECORD_ID).scalar() or 0) + 1
                    ids = list(range(first, first + len(rows)))
                    _INSERT_RECORDS_WITH_ID_MANY.execute(conn, [{"id": rid, **row} for rid, row in zip(
                        ids, rows, strict=True)], memo)
                else:
                    ids = _INSERT_RECORDS_MANY.returning(conn, rows, memo)
                _INSERT_NAME_MANY.execute(conn, [_name_values(record_id, doctype, source, now)
                                                 for record_id, (source, canonical, _) in zip(ids, fresh, strict=True)],
                                          memo)
                _INSERT_ATTEMPT_MANY.execute(conn, [{  # the inserts about to be sent (see note_attempt)
                    "record_id": record_id, "doctype": doctype, "target_site": target, "payload_hash": payload_hash,
                    "payload": canonical, "sent_at": now,
                } for record_id, (_, canonical, payload_hash) in zip(ids, fresh, strict=True)], memo)
                for record_id, (source, canonical, _) in zip(ids, fresh, strict=True):
                    created[source.name] = RecordView(record_id, doctype, RecordStatus.CREATING, canonical,
                                                      {source.site: source}, now)
        return created, left_out

    def discard_creates(self, record_ids: list[int]) -> None:
        """Forget create intents the target certainly did not carry out (it answered with an error)."""
        with self.db.write() as session:
            conn = session.connection()
            for chunk in _chunks(record_ids):
                ids = conn.execute(select(_RECORD.c.id).where(
                    _RECORD.c.id.in_(chunk), _RECORD.c.status == RecordStatus.CREATING)).scalars().all()
                if ids:
                    conn.execute(delete(_ATTEMPT).where(_ATTEMPT.c.record_id.in_(ids)))
                    conn.execute(delete(_NAME).where(_NAME.c.record_id.in_(ids)))
                    conn.execute(delete(_RECORD).where(_RECORD.c.id.in_(ids)))


"""The engine's reads and writes of sync state (records, names, conflicts, watermarks, logs).

Every method here is synchronous database work; the engine calls them through `asyncio.to_thread` so
the event loop (and a console or webhook receiver sharing it) never waits on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, true, update
from sqlmodel import Session, col, select

from erpsync_tui.store import control
from erpsync_tui.store.db import Database
from erpsync_tui.store.logs import add_log, add_logs
from erpsync_tui.store.many import Many, ManyReturning, json_texts
from erpsync_tui.store.models import (
    IDENTITY_EPOCH,
    Conflict,
    ConflictStatus,
    CreateAttempt,
    Meta,
    RecordStatus,
    SyncName,
    SyncRecord,
    Watermark,
    utcnow,
)


@dataclass(slots=True)
class Side:
    """What we know of a document on one site."""

    site: str
    name: str
    content_hash: str | None
    modified: str | None


@dataclass(slots=True)
class RecordView:
    record_id: int
    doctype: str
    status: str
    base: dict[str, Any] | None
    sides: dict[str, Side]
    created_at: datetime | None = None
    retrying: bool = False  # a create for this record was attempted before (its answer may have been lost)


class AttemptNoted(StrEnum):
    RECORDED = "recorded"
    ALREADY_PAIRED = "already_paired"
    LEASE_LOST = "lease_lost"


@dataclass(slots=True)
class PendingCreate:
    """A record whose counterpart was (perhaps) created on the target without us learning its name."""

    record: RecordView
    hashes: list[str]  # the content hash of every insert sent for it
    payloads: list[dict[str, Any]]  # and its canonical content
    sent: list[datetime]  # and when it was sent (our clock), oldest first

    @property
    def first_sent(self) -> datetime:
        return self.sent[0]


# Built once: constructing SQLAlchemy statements costs more than running them (about 1 ms each, measured),
# and these run several times for every synced document.
_RECORD = SyncRecord.__table__  # type: ignore[attr-defined]
_NAME = SyncName.__table__  # type: ignore[attr-defined]
_FIND = select(_NAME.c.record_id).where(
    _NAME.c.site == bindparam("site"), _NAME.c.doctype == bindparam("doctype"), _NAME.c.name == bindparam("name")
)
_RECORD_ROW = select(_RECORD.c.doctype, _RECORD.c.status, _RECORD.c.base, _RECORD.c.created_at).where(
    _RECORD.c.id == bindparam("rid")
)
_NAMES_OF = select(_NAME.c.site, _NAME.c.name, _NAME.c.content_hash, _NAME.c.modified).where(
    _NAME.c.record_id == bindparam("rid")
)
_ATTEMPT = CreateAttempt.__table__  # type: ignore[attr-defined]
_PENDING_CREATES = select(_ATTEMPT.c.record_id, _ATTEMPT.c.payload_hash, _ATTEMPT.c.payload, _ATTEMPT.c.sent_at).join(
    _RECORD, _RECORD.c.id == _ATTEMPT.c.record_id
).where(
    _RECORD.c.status == RecordStatus.CREATING, _ATTEMPT.c.doctype == bindparam("doctype"),
    _ATTEMPT.c.target_site == bindparam("target"),
).order_by(_ATTEMPT.c.id)
_INSERT_ATTEMPT = insert(_ATTEMPT)
_SIDE_ON = select(_NAME.c.id).where(_NAME.c.record_id == bindparam("rid"), _NAME.c.site == bindparam("s"))
_FORGET_ATTEMPTS = delete(_ATTEMPT).where(_ATTEMPT.c.record_id == bindparam("rid"))
_INSERT_RECORD = insert(_RECORD).returning(_RECORD.c.id)
_INSERT_NAME = insert(_NAME)
_INSERT_RECORDS = insert(_RECORD).returning(_RECORD.c.id, sort_by_parameter_order=True)  # many rows, ids in order
_SYNCED = update(_RECORD).where(_RECORD.c.id == bindparam("rid")).values(
    base=bindparam("base"), base_hash=bindparam("base_hash"), status=RecordStatus.SYNCED, last_error=None,
    error_code=None, updated_at=bindparam("now"),
)
_NAME_SYNCED = update(_NAME).where(_NAME.c.record_id == bindparam("rid"), _NAME.c.site == bindparam("s")).values(
    name=bindparam("n"), content_hash=bindparam("h"), modified=bindparam("m"), snapshot=None,
    synced_at=bindparam("now"),
)
# The same statements for a batch of rows (bulk sync): each document converted once, one executemany each.
_INSERT_RECORDS_MANY = ManyReturning(_INSERT_RECORDS)
_INSERT_RECORDS_WITH_ID_MANY = Many(insert(_RECORD))  # rows that carry their own id (see begin_create_many)
_MAX_RECORD_ID = select(func.max(_RECORD.c.id))
_INSERT_NAME_MANY = Many(_INSERT_NAME)
_INSERT_ATTEMPT_MANY = Many(_INSERT_ATTEMPT)
_SYNCED_MANY = Many(_SYNCED)
_NAME_SYNCED_MANY = Many(_NAME_SYNCED)
_FORGET_ATTEMPTS_IN = delete(_ATTEMPT).where(_ATTEMPT.c.record_id.in_(bindparam("rids", expanding=True)))


class SyncState:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------------------------ lookups

    def find(self, site: str, doctype: str, name: str) -> RecordView | None:
        with self.db.read() as session:
            conn = session.connection()
            record_id = conn.execute(_FIND, {"site": site, "doctype": doctype, "name": name}).scalar()
            return _view(conn, record_id) if record_id is not None else None

    def mapped_names(self, site: str, doctype: str, names: list[str]) -> set[str]:
        """Which of `names` on `site` already belong to a sync record (one query per 500 names)."""
        found: set[str] = set()
        with self.db.read() as session:
            for start in range(0, len(names), 500):
                chunk = names[start:start + 500]
                found.update(session.exec(select(SyncName.name).where(
                    SyncName.site == site, SyncName.doctype == doctype, col(SyncName.name).in_(chunk))).all())
        return found

    def unpaired_names(self, site: str, doctype: str, names: list[str]) -> set[str]:
        """Which of `names` on `site` no record pairs or tracks yet — or only as ambiguous (matching decides)."""
        tracked: set[str] = set()
        with self.db.read() as session:
            conn = session.connection()
            for chunk in _chunks(names):
                tracked.update(name for name, status in conn.execute(
                    select(_NAME.c.name, _RECORD.c.status).join(_RECORD, _RECORD.c.id == _NAME.c.record_id).where(
                        _NAME.c.site == site, _NAME.c.doctype == doctype, _NAME.c.name.in_(chunk)))
                    if status != RecordStatus.AMBIGUOUS)
        return {name for name in names if name not in tracked}

    def record_identity(self, doctype: str, pairs: list[Any], ambiguous: list[Any],
                        unmatched: dict[str, list[str]]) -> int:
        """Record what matching found, in one transaction: pairs (no base: never synced together) and ambiguous
        documents (neither paired nor created). A document ambiguous before and decided now loses that mark.

        `pairs` are matching.Pairing, `ambiguous` matching.Ambiguity. Returns the number of pairs recorded (a pair
        one of whose documents got a record meanwhile is left to the sync that made it).
        """
        now = utcnow()
        decided = [(site, name) for p in pairs for site, name in p.names.items()]
        decided += [(a.site, a.name) for a in ambiguous]
        decided += [(site, name) for site, names in unmatched.items() for name in names]
        with self.db.write() as session:
            conn = session.connection()
            by_site: dict[str, list[str]] = {}
            for site, name in decided:
                by_site.setdefault(site, []).append(name)
            stale: list[int] = []
            tracked: set[tuple[str, str]] = set()
            for site, names in by_site.items():
                for chunk in _chunks(names):
                    for name, rid, status in conn.execute(select(_NAME.c.name, _NAME.c.record_id, _RECORD.c.status)
                                                          .join(_RECORD, _RECORD.c.id == _NAME.c.record_id).where(
                            _NAME.c.site == site, _NAME.c.doctype == doctype, _NAME.c.name.in_(chunk))):
                        if status == RecordStatus.AMBIGUOUS:
                            stale.append(rid)
                        else:
                            tracked.add((site, name))
            for chunk in _chunks(stale):
                conn.execute(delete(_ATTEMPT).where(_ATTEMPT.c.record_id.in_(chunk)))
                conn.execute(delete(_NAME).where(_NAME.c.record_id.in_(chunk)))
                conn.execute(delete(_RECORD).where(_RECORD.c.id.in_(chunk)))
            fresh = [p for p in pairs if not any((s, n) in tracked for s, n in p.names.items())]
            marked = [a for a in ambiguous if (a.site, a.name) not in tracked]
            # A pair compared identical (`synced`) is recorded as synced with its base; any other has none.
            rows = [{"doctype": doctype, "status": RecordStatus.SYNCED, "base": p.synced[0] if p.synced else None,
                     "base_hash": p.synced[1] if p.synced else None, "origin_site": None, "created_at": now,
                     "updated_at": now, "last_error": None, "error_code": None} for p in fresh]
            rows += [{"doctype": doctype, "status": RecordStatus.AMBIGUOUS, "base": None, "base_hash": None,
                      "origin_site": a.site, "created_at": now, "updated_at": now,
                      "last_error": _ambiguity_text(a), "error_code": "ERP009"} for a in marked]
            ids = _insert_records(conn, rows)
            names = [_name_values(rid, doctype, Side(site, name, *(p.synced[2][site] if p.synced else (None, None))),
                                  now)
                     for rid, p in zip(ids, fresh, strict=False) for site, name in p.names.items()]
            names += [_name_values(rid, doctype, Side(a.site, a.name, None, None), now)
                      for rid, a in zip(ids[len(fresh):], marked, strict=True)]
            _INSERT_NAME_MANY.execute(conn, names)
            logs = [{"message": f"ambiguous: {doctype} {a.name} on {a.site} {_ambiguity_text(a)}; not paired, not "
                                "created — see `erpsync-tui match`", "level": "WARNING", "site": a.site,
                     "doctype": doctype, "name": a.name, "outcome": "ambiguous", "error_code": "ERP009"}
                    for a in marked]
            if fresh:
                logs.append({"message": f"matched {len(fresh)} {doctype} documents both sites already held (no "
                                        "base: differing ones follow the policy as a first contact)",
                             "level": "INFO", "doctype": doctype, "outcome": "paired"})
            add_logs(session, logs)
            return len(fresh)

    def mark_ambiguous(self, doctype: str, ambiguity: Any) -> None:
        """Record one document as ambiguous (a matching.Ambiguity) unless something tracks it already."""
        self.record_identity(doctype, [], [ambiguity], {})

    def identity_epoch(self) -> datetime | None:
        """When the state last forgot pairs (a restore, a reset): copies our API user made before then may be
        unknown to it, so the likeness of a lost create's copy proves nothing for them (see owner_of_copy)."""
        with self.db.read() as session:
            row = session.get(Meta, IDENTITY_EPOCH)
        return datetime.fromisoformat(row.value) if row is not None else None

    def reset(self, doctype: str | None = None) -> dict[str, int]:
        """Forget what pairs documents (all doctypes, or one): records, names, create attempts, their conflicts,
        watermarks. The documents on the sites are untouched; the next sync re-pairs them by the matching rules
        before it creates anything. Returns how many rows of each kind were deleted."""
        attempt, conflict, watermark = _ATTEMPT, Conflict.__table__, Watermark.__table__  # type: ignore[attr-defined]

        def where(table: Any) -> Any:
            return table.c.doctype == doctype if doctype is not None else true()

        with self.db.write() as session:
            conn = session.connection()
            counts = {"conflicts": conn.execute(delete(conflict).where(where(conflict))).rowcount,
                      "create_attempts": conn.execute(delete(attempt).where(where(attempt))).rowcount,
                      "names": conn.execute(delete(_NAME).where(where(_NAME))).rowcount,
                      "records": conn.execute(delete(_RECORD).where(where(_RECORD))).rowcount,
                      "watermarks": conn.execute(delete(watermark).where(where(watermark))).rowcount}
            session.merge(Meta(key=IDENTITY_EPOCH, value=utcnow().isoformat()))
            add_log(session, f"sync state reset ({doctype or 'every doctype'}): "
                             + ", ".join(f"{v} {k}" for k, v in counts.items()), level="WARNING", doctype=doctype,
                    outcome="reset")
        return counts

    def view(self, record_id: int) -> RecordView | None:
        with self.db.read() as session:
            return _view(session.connection(), record_id)

    def known_modified(self, site: str, doctype: str, names: list[str]) -> dict[str, str | None]:
        """For each name already synced on `site`: the `modified` we last saw (one query per batch)."""
        if not names:
            return {}
        with self.db.read() as session:
            rows = session.exec(
                select(SyncName.name, SyncName.modified, SyncName.content_hash, SyncRecord.status)
                .join(SyncRecord, SyncRecord.id == SyncName.record_id)
                .where(SyncName.site == site, SyncName.doctype == doctype, col(SyncName.name).in_(names))
            ).all()
        return {name: modified for name, modified, content_hash, status in rows
                if status == RecordStatus.SYNCED and content_hash is not None}  # no hash: must be compared

    def translate_name(self, doctype: str, from_site: str, name: str, to_site: str) -> str | None:
        if from_site == to_site:
            return name
        with self.db.read() as session:
            row = session.exec(
                select(SyncName).where(
                    SyncName.site == from_site, SyncName.doctype == doctype, SyncName.name == name
                )
            ).first()
            if row is None:
                return None
            other = session.exec(
                select(SyncName.name).where(SyncName.record_id == row.record_id, SyncName.site == to_site)
            ).first()
        return other

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

    # ------------------------------------------------------------------------------------ writes

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

    # ------------------------------------------------------------------------------------ batches (bulk sync)

    def find_many(self, site: str, doctype: str, names: list[str]) -> dict[str, RecordView]:
        """`find` for many names of one site in one read: name → record, for the names that have one."""
        found: dict[str, RecordView] = {}
        with self.db.read() as session:
            conn = session.connection()
            for chunk in _chunks(names):
                ids = conn.execute(select(_NAME.c.name, _NAME.c.record_id).where(
                    _NAME.c.site == site, _NAME.c.doctype == doctype, _NAME.c.name.in_(chunk))).all()
                views = _views(conn, [record_id for _, record_id in ids])
                found.update((name, views[rid]) for name, rid in ids if rid in views)
        return found

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

    def mark_synced_many(
        self, doctype: str, synced: list[tuple[int, dict[str, Any], str, list[Side]]], logs: list[dict[str, Any]],
        *, texts: Iterable[tuple[dict[str, Any], str]] = (),
    ) -> None:
        """`mark_synced` for a batch — (record id, base, base hash, sides) each — and its log lines, one commit.

        `texts` as for `begin_create_many`: bases already in canonical JSON.
        """
        now = utcnow()
        with self.db.write() as session:
            conn = session.connection()
            memo = json_texts(texts)  # and the batch's timestamp, converted once
            _SYNCED_MANY.execute(conn, [{"rid": rid, "base": base, "base_hash": base_hash, "now": now}
                                        for rid, base, base_hash, _ in synced], memo)
            present: dict[tuple[int, str], tuple[str, str | None, str | None]] = {}
            for chunk in _chunks([rid for rid, _, _, _ in synced]):
                present.update(((rid, site), (name, content_hash, modified)) for rid, site, name, content_hash, modified
                               in conn.execute(select(_NAME.c.record_id, _NAME.c.site, _NAME.c.name,
                                                      _NAME.c.content_hash, _NAME.c.modified)
                                               .where(_NAME.c.record_id.in_(chunk))))
            updates, inserts = [], []
            for record_id, _, _, sides in synced:
                for side in sides:
                    recorded = present.get((record_id, side.site))
                    if recorded is None:
                        inserts.append(_name_values(record_id, doctype, side, now))
                    elif recorded != (side.name, side.content_hash, side.modified):
                        # A side recorded exactly so already (the source of a create, recorded with its intent)
                        # is left as it is: its `synced_at` stays the time these values were recorded.
                        updates.append({"rid": record_id, "s": side.site, "n": side.name, "h": side.content_hash,
                                        "m": side.modified, "now": now})
            _NAME_SYNCED_MANY.execute(conn, updates, memo)
            _INSERT_NAME_MANY.execute(conn, inserts, memo)
            paired = [record_id for record_id, _, _, sides in synced if len(sides) > 1]
            for chunk in _chunks(paired):  # the counterparts' names are known now
                conn.execute(_FORGET_ATTEMPTS_IN, {"rids": chunk})
            add_logs(session, logs)

    def mark_synced(
        self,
        record_id: int,
        doctype: str,
        base: dict[str, Any] | None,
        base_hash: str | None,
        sides: list[Side],
        log: dict[str, Any] | None = None,
    ) -> None:
        """Both sides now hold `base`: store it as the merge base and each side's name/hash/modified.

        `base` None links two documents that were never synced together (first contact, a lost create edited
        since): they share no ancestor, so none is stored — durably, or a later pass would merge against it.

        One transaction of plain statements (no ORM unit of work): this runs once per synced document, and
        the outcome's log line (`log`) is written in the same transaction, so state and log never disagree.
        """
        now = utcnow()
        with self.db.write() as session:
            conn = session.connection()
            conn.execute(_SYNCED, {"rid": record_id, "base": base, "base_hash": base_hash, "now": now})
            for side in sides:
                changed = conn.execute(_NAME_SYNCED, {"rid": record_id, "s": side.site, "n": side.name,
                                                      "h": side.content_hash, "m": side.modified, "now": now})
                if not changed.rowcount:
                    conn.execute(_INSERT_NAME, _name_values(record_id, doctype, side, now))
            if len(sides) > 1:
                conn.execute(_FORGET_ATTEMPTS, {"rid": record_id})  # the counterpart's name is known now
            if log is not None:
                add_log(session, **log)

    def absorb_half_record(self, into_id: int, other_id: int, site: str) -> bool:
        """Fold `other` — a record known only by its document on `site` — into `into`, atomically.

        Two tasks may each hold a half of the same document pair (both sites reported a document of the same
        natural name at once). Whichever commits first absorbs the other half; the loser finds its own record
        gone (False) and re-reads the winner's mapping.
        """
        with self.db.write() as session:
            conn = session.connection()
            if conn.execute(_RECORD_ROW, {"rid": into_id}).first() is None:
                return False
            other_sides = conn.execute(_NAMES_OF, {"rid": other_id}).all()
            if [row[0] for row in other_sides] != [site]:
                return False
            conn.execute(delete(_NAME).where(_NAME.c.record_id == other_id))
            conn.execute(_FORGET_ATTEMPTS, {"rid": other_id})  # its insert was refused as a duplicate
            conn.execute(delete(_RECORD).where(_RECORD.c.id == other_id))
            return True

    def mark_status(self, record_id: int, status: str, error: str | None = None, code: str | None = None) -> None:
        with self.db.write() as session:
            record = session.get(SyncRecord, record_id)
            if record is None:
                return
            record.status, record.last_error, record.error_code = status, error, code
            record.updated_at = utcnow()
            session.add(record)

    def forget_side(self, record_id: int, site: str) -> None:
        with self.db.write() as session:
            for row in session.exec(
                select(SyncName).where(SyncName.record_id == record_id, SyncName.site == site)
            ).all():
                session.delete(row)

    def open_conflict(
        self,
        record_id: int,
        doctype: str,
        names: dict[str, str],
        versions: dict[str, Any],
        modified: dict[str, str],
        base: dict[str, Any] | None,
        fields: list[str],
    ) -> int:
        """Open (or refresh) the one open conflict of a record."""
        with self.db.write() as session:
            conflict = session.exec(
                select(Conflict).where(
                    Conflict.record_id == record_id,
                    col(Conflict.status).in_([ConflictStatus.OPEN, ConflictStatus.RESOLVING]),
                )
            ).first()
            if conflict is None:
                conflict = Conflict(record_id=record_id, doctype=doctype)
            conflict.names, conflict.versions, conflict.modified = names, versions, modified
            conflict.base, conflict.fields = base, fields
            session.add(conflict)
            record = session.get(SyncRecord, record_id)
            if record is not None:
                record.status, record.updated_at = RecordStatus.CONFLICT, utcnow()
                session.add(record)
            session.flush()
            return int(conflict.id or 0)

    def close_conflicts(self, record_id: int, resolution: dict[str, Any], by: str) -> None:
        with self.db.write() as session:
            for conflict in session.exec(
                select(Conflict).where(
                    Conflict.record_id == record_id,
                    col(Conflict.status).in_([ConflictStatus.OPEN, ConflictStatus.RESOLVING]),
                )
            ).all():
                conflict.status, conflict.resolution = ConflictStatus.RESOLVED, resolution
                conflict.resolved_by, conflict.resolved_at = by, utcnow()
                session.add(conflict)

    def log(self, message: str, **fields: Any) -> None:
        with self.db.write() as session:
            add_log(session, message, **fields)

    # ------------------------------------------------------------------------------------ watermarks

    def watermark(self, site: str, doctype: str, kind: str = "incremental") -> tuple[str | None, list[str]]:
        with self.db.read() as session:
            row = _watermark_row(session, site, doctype, kind)
            return (row.value, list(row.names_at_value)) if row else (None, [])

    def set_watermark(self, site: str, doctype: str, value: str | None, names: list[str], kind: str) -> None:
        with self.db.write() as session:
            row = _watermark_row(session, site, doctype, kind) or Watermark(site=site, doctype=doctype, kind=kind)
            row.value, row.names_at_value, row.updated_at = value, names, utcnow()
            session.add(row)

    def clear_watermarks(self, kind: str) -> None:
        with self.db.write() as session:
            for row in session.exec(select(Watermark).where(Watermark.kind == kind)).all():
                session.delete(row)


def _watermark_row(session: Session, site: str, doctype: str, kind: str) -> Watermark | None:
    return session.exec(
        select(Watermark).where(Watermark.site == site, Watermark.doctype == doctype, Watermark.kind == kind)
    ).first()


def _view(conn: Connection, record_id: int) -> RecordView | None:
    record = conn.execute(_RECORD_ROW, {"rid": record_id}).first()
    if record is None:
        return None
    names = conn.execute(_NAMES_OF, {"rid": record_id}).all()
    sides = {site: Side(site, name, content_hash, modified) for site, name, content_hash, modified in names}
    doctype, status, base, created_at = record
    return RecordView(record_id, doctype, status, base, sides, created_at)


def _views(conn: Connection, record_ids: list[int]) -> dict[int, RecordView]:
    """Several records with their sides, in two queries."""
    views: dict[int, RecordView] = {}
    for chunk in _chunks(list(dict.fromkeys(record_ids))):
        for rid, doctype, status, base, created_at in conn.execute(select(
                _RECORD.c.id, _RECORD.c.doctype, _RECORD.c.status, _RECORD.c.base, _RECORD.c.created_at,
        ).where(_RECORD.c.id.in_(chunk))):
            views[rid] = RecordView(rid, doctype, status, base, {}, created_at)
        for rid, site, name, content_hash, modified in conn.execute(select(
                _NAME.c.record_id, _NAME.c.site, _NAME.c.name, _NAME.c.content_hash, _NAME.c.modified,
        ).where(_NAME.c.record_id.in_(chunk))):
            if rid in views:
                views[rid].sides[site] = Side(site, name, content_hash, modified)
    return views


def _ambiguity_text(ambiguity: Any) -> str:
    shown = ", ".join(ambiguity.candidates[:5]) + (" …" if len(ambiguity.candidates) > 5 else "")
    return (f"matches {len(ambiguity.candidates)} documents on the other site by {'+'.join(ambiguity.rule)}: "
            f"{shown}")


def _insert_records(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert sync_record rows in one executemany; their ids in order."""
    if not rows:
        return []
    if conn.dialect.name == "sqlite":
        # The caller's transaction holds SQLite's write lock (BEGIN IMMEDIATE): the ids after the largest are ours.
        first = (conn.execute(_MAX_RECORD_ID).scalar() or 0) + 1
        ids = list(range(first, first + len(rows)))
        _INSERT_RECORDS_WITH_ID_MANY.execute(conn, [{"id": rid, **row} for rid, row in zip(ids, rows, strict=True)])
        return ids
    return _INSERT_RECORDS_MANY.returning(conn, rows)


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    return [values[i:i + size] for i in range(0, len(values), size)]


def _name_values(record_id: int, doctype: str, side: Side, now: datetime) -> dict[str, Any]:
    # `snapshot` is left empty: nothing reads it (the merge base is the record's `base`; conflicts carry their own
    # versions), and writing the document into every side row cost more than any other part of the state write.
    return {"record_id": record_id, "site": side.site, "doctype": doctype, "name": side.name,
            "content_hash": side.content_hash, "snapshot": None, "modified": side.modified, "synced_at": now}

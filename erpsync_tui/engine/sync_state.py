"""The engine's reads and writes of sync state (records, names, conflicts, watermarks, logs).

Every method here is synchronous database work; the engine calls them through `asyncio.to_thread` so
the event loop (and a console or webhook receiver sharing it) never waits on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import delete, true
from sqlmodel import col, select

from erpsync_tui.engine.create_intents import CreateIntents
from erpsync_tui.engine.records import RecordView, Side
from erpsync_tui.engine.state_sql import (
    _ATTEMPT,
    _FIND,
    _FORGET_ATTEMPTS,
    _FORGET_ATTEMPTS_IN,
    _INSERT_NAME,
    _INSERT_NAME_MANY,
    _NAME,
    _NAME_SYNCED,
    _NAME_SYNCED_MANY,
    _NAMES_OF,
    _RECORD,
    _RECORD_ROW,
    _SYNCED,
    _SYNCED_MANY,
    _ambiguity_text,
    _chunks,
    _insert_records,
    _name_values,
    _view,
    _views,
    _watermark_row,
)
from erpsync_tui.store.db import Database
from erpsync_tui.store.logs import add_log, add_logs
from erpsync_tui.store.many import json_texts
from erpsync_tui.store.models import (
    IDENTITY_EPOCH,
    Conflict,
    ConflictStatus,
    Meta,
    RecordStatus,
    SyncName,
    SyncRecord,
    Watermark,
    utcnow,
)


class SyncState(CreateIntents):
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

    # ------------------------------------------------------------------------------------ writes

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



"""The engine's reads and writes of sync state (records, names, conflicts, watermarks, logs).

Every method here is synchronous database work; the engine calls them through `asyncio.to_thread` so
the event loop (and a console or webhook receiver sharing it) never waits on SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from erpsync_tui.store.db import Database
from erpsync_tui.store.logs import add_log
from erpsync_tui.store.models import (
    Conflict,
    ConflictStatus,
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


class SyncState:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------------------------------ lookups

    def find(self, site: str, doctype: str, name: str) -> RecordView | None:
        with self.db.read() as session:
            row = session.exec(
                select(SyncName).where(SyncName.site == site, SyncName.doctype == doctype, SyncName.name == name)
            ).first()
            return _view(session, row.record_id) if row else None

    def view(self, record_id: int) -> RecordView | None:
        with self.db.read() as session:
            return _view(session, record_id)

    def known_modified(self, site: str, doctype: str, names: list[str]) -> dict[str, str | None]:
        """For each name already synced on `site`: the `modified` we last saw (one query per batch)."""
        if not names:
            return {}
        with self.db.read() as session:
            rows = session.exec(
                select(SyncName.name, SyncName.modified, SyncRecord.status)
                .join(SyncRecord, SyncRecord.id == SyncName.record_id)
                .where(SyncName.site == site, SyncName.doctype == doctype, col(SyncName.name).in_(names))
            ).all()
        return {name: modified for name, modified, status in rows if status == RecordStatus.SYNCED}

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

    def creating_with_hash(self, doctype: str, target: str, payload_hash: str) -> RecordView | None:
        """An in-flight create aimed at `target` with this content: the document is our own echo."""
        with self.db.read() as session:
            rows = session.exec(
                select(SyncRecord).where(
                    SyncRecord.doctype == doctype,
                    SyncRecord.status == RecordStatus.CREATING,
                    SyncRecord.base_hash == payload_hash,
                )
            ).all()
            for record in rows:
                view = _view(session, record.id)
                if view is not None and target not in view.sides:
                    return view
        return None

    # ------------------------------------------------------------------------------------ writes

    def begin_create(
        self, doctype: str, source: Side, canonical: dict[str, Any], payload_hash: str
    ) -> RecordView:
        """Record the intent before the insert request: a lost answer can then be recovered, not repeated."""
        with self.db.write() as session:
            existing = session.exec(
                select(SyncName).where(
                    SyncName.site == source.site, SyncName.doctype == doctype, SyncName.name == source.name
                )
            ).first()
            if existing is not None:
                view = _view(session, existing.record_id)
                assert view is not None
                return view
            record = SyncRecord(
                doctype=doctype,
                status=RecordStatus.CREATING,
                base=canonical,
                base_hash=payload_hash,
                origin_site=source.site,
            )
            session.add(record)
            session.flush()
            session.add(_name_row(record.id, doctype, source, canonical))
            session.flush()
            view = _view(session, record.id)
            assert view is not None
            return view

    def mark_synced(
        self,
        record_id: int,
        doctype: str,
        base: dict[str, Any],
        base_hash: str,
        sides: list[Side],
    ) -> None:
        """Both sides now hold `base`: store it as the merge base and each side's name/hash/modified."""
        with self.db.write() as session:
            record = session.get(SyncRecord, record_id)
            if record is None:
                return
            record.base, record.base_hash = base, base_hash
            record.status, record.last_error, record.error_code = RecordStatus.SYNCED, None, None
            record.updated_at = utcnow()
            session.add(record)
            for side in sides:
                _upsert_name(session, record_id, doctype, side, base)

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


def _view(session: Session, record_id: int) -> RecordView | None:
    record = session.get(SyncRecord, record_id)
    if record is None:
        return None
    names = session.exec(select(SyncName).where(SyncName.record_id == record_id)).all()
    sides = {n.site: Side(n.site, n.name, n.content_hash, n.modified) for n in names}
    return RecordView(int(record.id or 0), record.doctype, record.status, record.base, sides, record.created_at)


def _name_row(record_id: int | None, doctype: str, side: Side, snapshot: dict[str, Any]) -> SyncName:
    return SyncName(
        record_id=int(record_id or 0),
        site=side.site,
        doctype=doctype,
        name=side.name,
        content_hash=side.content_hash,
        snapshot=snapshot,
        modified=side.modified,
    )


def _upsert_name(session: Session, record_id: int, doctype: str, side: Side, snapshot: dict[str, Any]) -> None:
    row = session.exec(
        select(SyncName).where(SyncName.record_id == record_id, SyncName.site == side.site)
    ).first()
    if row is None:
        session.add(_name_row(record_id, doctype, side, snapshot))
        return
    row.name, row.content_hash, row.modified = side.name, side.content_hash, side.modified
    row.snapshot, row.synced_at = snapshot, utcnow()
    session.add(row)

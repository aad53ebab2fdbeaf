"""The sync state's prepared SQL statements and the row helpers `SyncState` and its create intents share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, update
from sqlmodel import Session, select

from erpsync_tui.engine.records import RecordView, Side
from erpsync_tui.store.many import Many, ManyReturning
from erpsync_tui.store.models import CreateAttempt, RecordStatus, SyncName, SyncRecord, Watermark

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

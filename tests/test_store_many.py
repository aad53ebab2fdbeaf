"""`store.many`: many rows through a prebuilt statement store exactly what `Connection.execute` stores."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from erpsync_tui.store import Database, open_database
from erpsync_tui.store.many import FirstEach, Many, ManyReturning
from erpsync_tui.store.models import RecordStatus, SyncLog, SyncName, SyncRecord

_RECORD = SyncRecord.__table__  # type: ignore[attr-defined]
_NAME = SyncName.__table__  # type: ignore[attr-defined]
_LOG = SyncLog.__table__  # type: ignore[attr-defined]
_SYNCED = update(_RECORD).where(_RECORD.c.id == bindparam("rid")).values(
    base=bindparam("base"), status=RecordStatus.SYNCED, last_error=None, updated_at=bindparam("now"))


pytestmark = pytest.mark.backends  # PostgreSQL (psycopg: named parameters) takes Connection.execute's path


@pytest.fixture
def db(db_url: str) -> Database:
    database = open_database(db_url)
    yield database
    database.dispose()


def _raw(db: Database, table: str) -> list[tuple]:
    with db.read() as session:
        return [tuple(row) for row in session.connection().exec_driver_sql(f"SELECT * FROM {table} ORDER BY id")]


def _records(now: datetime, docs: list[dict | None]) -> list[dict]:
    return [{"doctype": "Customer", "status": RecordStatus.CREATING, "base": doc, "base_hash": f"h{i}",
             "origin_site": "cloud", "created_at": now, "updated_at": now} for i, doc in enumerate(docs)]


DOCS = [{"a": 1, "b": [{"x": 1.5}], "ü": "ñ ✓"}, None, {}, {"k": "v"}]


def test_inserts_store_the_same_bytes_as_execute(db: Database) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with db.write() as session:
        session.connection().execute(insert(_RECORD), _records(now, DOCS))
    slow = _raw(db, "sync_record")
    with db.write() as session:
        session.connection().exec_driver_sql("DELETE FROM sync_record")
    with db.write() as session:
        Many(insert(_RECORD)).execute(session.connection(), _records(now, DOCS))
    fast = _raw(db, "sync_record")
    assert [row[1:] for row in fast] == [row[1:] for row in slow]
    with db.read() as session:  # None in a JSON column is JSON null (not SQL NULL), as SQLAlchemy stores it
        is_sql_null = session.connection().exec_driver_sql(
            "SELECT base IS NULL FROM sync_record ORDER BY id").scalars().all()
    assert is_sql_null[1] in (False, 0)
    if db.is_sqlite:
        assert fast[1][3] == "null"


def test_returning_gives_ids_in_row_order_and_memo_serialises_once(db: Database) -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    doc = {"same": "document"}
    memo: dict = {}
    with db.write() as session:
        conn = session.connection()
        ids = ManyReturning(insert(_RECORD).returning(_RECORD.c.id, sort_by_parameter_order=True)).returning(
            conn, _records(now, [doc, DOCS[0], doc]), memo)
        Many(insert(_NAME)).execute(conn, [{"record_id": rid, "site": "cloud", "doctype": "Customer",
                                            "name": f"C-{rid}", "content_hash": None, "snapshot": doc,
                                            "modified": None, "synced_at": now} for rid in ids], memo)
    assert ids == sorted(ids) and len(set(ids)) == 3
    # SQLite's fast path serialises the document once for five columns; PostgreSQL's named-parameter path
    # is plain Connection.execute (no memo), and must store the same rows.
    assert sum(1 for key in memo if key[1] == id(doc)) == (1 if db.is_sqlite else 0)
    rows = _raw(db, "sync_record")
    assert [row[0] for row in rows] == ids and [row[4] for row in rows] == ["h0", "h1", "h2"]
    with db.read() as session:
        names = session.connection().execute(_NAME.select().order_by(_NAME.c.id)).all()
    assert [n.snapshot for n in names] == [doc, doc, doc]
    assert all(n.synced_at == now for n in names)


def test_update_with_literal_values_matches_execute(db: Database) -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    with db.write() as session:
        session.connection().execute(insert(_RECORD), _records(now, [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]))
    later = datetime(2026, 2, 3, 4, 5, 6, 7, tzinfo=UTC)
    with db.write() as session:
        session.connection().execute(_SYNCED, [{"rid": 1, "base": {"b": 1}, "now": later},
                                               {"rid": 2, "base": None, "now": later}])
        Many(_SYNCED).execute(session.connection(), [{"rid": 3, "base": {"b": 1}, "now": later},
                                                     {"rid": 4, "base": None, "now": later}])
    rows = _raw(db, "sync_record")
    assert rows[2][1:] == (*rows[0][1:4], "h2", *rows[0][5:])
    assert rows[3][1:] == (*rows[1][1:4], "h3", *rows[1][5:])
    assert rows[2][2] == "synced"


def test_rows_leaving_column_defaults_go_through_execute(db: Database) -> None:
    many = Many(insert(_LOG))
    with db.write() as session:
        # `ts` and `level` left to their column defaults: SQLAlchemy fills them in.
        many.execute(session.connection(), [{"message": "one"}, {"message": "two"}])
        many.execute(session.connection(), [{"message": "three", "level": "ERROR"}, {"message": "4", "level": "INFO"}])
    with db.read() as session:
        rows = session.connection().execute(_LOG.select().order_by(_LOG.c.id)).all()
    assert [(r.message, r.level) for r in rows] == [("one", "INFO"), ("two", "INFO"), ("three", "ERROR"), ("4", "INFO")]
    assert all(r.ts is not None for r in rows)


def test_database_errors_come_as_sqlalchemy_errors(db: Database) -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    row = {"record_id": 1, "site": "cloud", "doctype": "Customer", "name": "C-1", "content_hash": None,
           "snapshot": None, "modified": None, "synced_at": now}
    with pytest.raises(IntegrityError), db.write() as session:  # the same name twice on one site
        Many(insert(_NAME)).execute(session.connection(), [row, dict(row)])
    assert _raw(db, "sync_name") == []  # rolled back


def test_first_each_reads_what_execute_first_reads(db: Database) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    with db.write() as session:
        ManyReturning(insert(_RECORD).returning(_RECORD.c.id)).returning(session.connection(), _records(now, DOCS))
    find = FirstEach(select(_RECORD.c.id, _RECORD.c.base, _RECORD.c.updated_at)
                     .where(_RECORD.c.base_hash == bindparam("h")).where(_RECORD.c.status == RecordStatus.CREATING)
                     .order_by(_RECORD.c.id).limit(1))
    params = [{"h": "h0"}, {"h": "absent"}, {"h": "h3"}, {"h": "h1"}]
    with db.read() as session:
        connection = session.connection()
        fast = find.first_each(connection, params)
        slow = [connection.execute(find.stmt, p).first() for p in params]
    assert fast == [None if row is None else tuple(row) for row in slow]
    assert fast[0] is not None and fast[0][1] == DOCS[0]  # JSON decoded, as SQLAlchemy decodes it
    assert fast[1] is None
    assert fast[3] is not None and fast[3][1] is None

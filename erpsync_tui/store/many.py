"""Many rows through one prebuilt statement, cheaply (the bulk sync's state and log writes).

`Connection.execute(stmt, rows)` converts every bound value of every row through its column type's bind
processor, one row at a time: a document stored in three JSON columns is serialised three times, and the
same timestamp is formatted once per row and column. For a batch of hundreds of documents that costs more
than SQLite's work. `Many` compiles the statement once per dialect and column set, converts each distinct
object once per call with the very processor `execute` would use (so what is stored is byte for byte the
same), and hands the rows to the DBAPI cursor's `executemany` in the same transaction.

Only for positional-parameter dialects (SQLite) and statements without Python-side column defaults left to
fill (every defaulted column must be given); anything else goes through `Connection.execute` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.sql import Executable

_Processor = Callable[[Any], Any] | None
_Bind = tuple[str, _Processor, Any, str]  # bind name, processor, value when the row has none, processor key
_SHARED = (dict, list, datetime)  # converted once per call (documents, the batch's timestamp); others each time


class Many:
    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        # (dialect name, column keys) → (sql, binds in order) or None: not fast
        self._plans: dict[tuple[str, tuple[str, ...]], tuple[str, list[_Bind]] | None] = {}

    def _plan(self, conn: Connection, keys: tuple[str, ...]) -> tuple[str, list[_Bind]] | None:
        dialect = conn.dialect
        cache_key = (dialect.name, keys)
        if cache_key in self._plans:
            return self._plans[cache_key]
        plan = None
        compiled: Any = self.stmt.compile(dialect=dialect, column_keys=list(keys))
        prefetch = getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None)
        if compiled.positional and compiled.positiontup is not None and not prefetch \
                and not compiled.literal_execute_params and not compiled.post_compile_params:
            binds: list[_Bind] | None = []
            for name in compiled.positiontup:
                bind = compiled.binds[name]
                if name not in keys and bind.required:
                    binds = None
                    break
                impl = bind.type.dialect_impl(dialect)
                binds.append((name, impl.bind_processor(dialect), None if name in keys else bind.effective_value,
                              f"{type(impl).__qualname__}:{impl!r}"))
            if binds is not None:
                plan = (compiled.string, binds)
        self._plans[cache_key] = plan
        return plan

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]], memo: dict[Any, Any] | None = None) -> None:
        """Run the statement once per row (an executemany), in `conn`'s transaction.

        `memo`, shared by several calls (in one transaction), lets them convert a document stored in several
        columns or tables once; the caller must keep the converted objects alive as long as the memo.
        """
        if not rows:
            return
        keys = tuple(rows[0])
        plan = self._plan(conn, keys) if all(tuple(row) == keys for row in rows) else None
        if plan is None:
            conn.execute(self.stmt, list(rows))
            return
        sql, binds = plan
        done: dict[Any, Any] = {} if memo is None else memo  # (type, object id) → converted; `rows` keeps it alive
        params = [_convert(binds, row, done) for row in rows]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(sql, params)
        finally:
            cursor.close()


def _convert(binds: list[_Bind], row: dict[str, Any], done: dict[Any, Any]) -> tuple[Any, ...]:
    out = []
    for name, processor, default, kind in binds:
        value = row[name] if name in row else default
        if processor is not None:  # called on None too, as Connection.execute does (JSON stores None as null)
            if isinstance(value, _SHARED):
                key = (kind, id(value))
                if key in done:
                    value = done[key]
                else:
                    value = done[key] = processor(value)
            else:
                value = processor(value)
        out.append(value)
    return tuple(out)


class ManyReturning(Many):
    """An INSERT … RETURNING <one column> for many rows: the returned values, in the order of the rows.

    On SQLite one cheap statement per row on the DBAPI cursor (the order is then certain); elsewhere SQLAlchemy's
    own batched form (`sort_by_parameter_order`).
    """

    def returning(self, conn: Connection, rows: Sequence[dict[str, Any]], memo: dict[Any, Any] | None = None
                  ) -> list[Any]:
        if not rows:
            return []
        keys = tuple(rows[0])
        plan = self._plan(conn, keys) if conn.dialect.name == "sqlite" and all(tuple(r) == keys for r in rows) \
            else None
        if plan is None:
            return list(conn.execute(self.stmt, list(rows)).scalars().all())
        sql, binds = plan
        done: dict[Any, Any] = {} if memo is None else memo
        out = []
        cursor = conn.connection.cursor()
        try:
            for row in rows:
                cursor.execute(sql, _convert(binds, row, done))
                out.append(cursor.fetchone()[0])
        finally:
            cursor.close()
        return out

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

import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable

_SHARED = (dict, list, datetime)  # converted once per call (documents, the batch's timestamp); others each time
_JSON = "json"  # the memo kind of every JSON column's bind processor (one dialect, one serialiser)


def json_texts(texts: Iterable[tuple[Any, str]]) -> dict[Any, Any]:
    """A memo that already holds the JSON text of some documents: (document, its JSON text) pairs.

    For a caller that serialised a document anyway (the canonical form it hashes): JSON columns then store that
    text instead of serialising the document again. The text must be JSON that reads back equal to the document;
    the documents must stay alive as long as the memo (it is keyed by their ids).
    """
    return {(_JSON, id(document)): text for document, text in texts}


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to turn a row (a dict) into the positional parameters of the compiled statement."""

    sql: str
    take: Callable[[dict[str, Any]], tuple[Any, ...]]  # the row's values of the binds it gives, in order
    constants: list[tuple[int, Any]]  # (position, converted value) of binds the row does not give (literal values)
    processors: list[tuple[int, Callable[[Any], Any], str]]  # (position, bind processor, its kind) of row values

    def convert(self, row: dict[str, Any], done: dict[Any, Any]) -> list[Any]:
        values = list(self.take(row))
        for position, value in self.constants:
            values.insert(position, value)
        for position, processor, kind in self.processors:
            # Called on None too, as Connection.execute does (a JSON column stores None as JSON null).
            value = values[position]
            if isinstance(value, _SHARED):
                key = (kind, id(value))
                if key in done:
                    values[position] = done[key]
                else:
                    values[position] = done[key] = processor(value)
            else:
                values[position] = processor(value)
        return values


class Many:
    def __init__(self, stmt: Executable) -> None:
        self.stmt = stmt
        self._plans: dict[tuple[str, tuple[str, ...]], _Plan | None] = {}  # (dialect, row keys) → plan; None: slow

    def _plan(self, conn: Connection, keys: tuple[str, ...]) -> _Plan | None:
        dialect = conn.dialect
        cache_key = (dialect.name, keys)
        if cache_key in self._plans:
            return self._plans[cache_key]
        plan = None
        compiled: Any = self.stmt.compile(dialect=dialect, column_keys=list(keys))
        prefetch = getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None)
        if compiled.positional and compiled.positiontup is not None and not prefetch \
                and not compiled.literal_execute_params and not compiled.post_compile_params:
            names: list[str] = []
            constants: list[tuple[int, Any]] = []
            processors: list[tuple[int, Callable[[Any], Any], str]] = []
            for position, name in enumerate(compiled.positiontup):
                bind = compiled.binds[name]
                impl = bind.type.dialect_impl(dialect)
                processor = impl.bind_processor(dialect)
                if name in keys:
                    names.append(name)
                    if processor is not None:
                        kind = _JSON if isinstance(impl, JSON) else f"{type(impl).__qualname__}:{impl!r}"
                        processors.append((position, processor, kind))
                elif bind.required:
                    break  # a value only SQLAlchemy knows how to fill in
                else:
                    value = bind.effective_value
                    constants.append((position, processor(value) if processor is not None else value))
            else:
                plan = _Plan(compiled.string, _taker(names), constants, processors)
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
        done: dict[Any, Any] = {} if memo is None else memo  # (type, object id) → converted; `rows` keeps it alive
        params = [plan.convert(row, done) for row in rows]
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(plan.sql, params)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, exc) from exc
        finally:
            cursor.close()


def _wrapped(conn: Connection, sql: str, exc: Exception) -> BaseException:
    """The DBAPI error as `Connection.execute` raises it (sqlite3.IntegrityError → sqlalchemy.exc.IntegrityError)."""
    return DBAPIError.instance(sql, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect)


def _taker(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda row: (row[name],)
    if not names:
        return lambda row: ()
    return operator.itemgetter(*names)


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
        done: dict[Any, Any] = {} if memo is None else memo
        out = []
        cursor = conn.connection.cursor()
        try:
            for row in rows:
                cursor.execute(plan.sql, plan.convert(row, done))
                out.append(cursor.fetchone()[0])
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, exc) from exc
        finally:
            cursor.close()
        return out


class FirstEach(Many):
    """A prebuilt SELECT run once per parameter row: the first result row of each (or None), as tuples.

    On positional dialects one cheap DBAPI call per row, each column converted by the processor SQLAlchemy's
    own result would use; elsewhere `Connection.execute(...).first()` per row.
    """

    def __init__(self, stmt: Executable) -> None:
        super().__init__(stmt)
        self._converters: dict[str, list[Callable[[Any], Any] | None]] = {}

    def first_each(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[tuple[Any, ...] | None]:
        if not rows:
            return []
        keys = tuple(rows[0])
        plan = self._plan(conn, keys) if all(tuple(row) == keys for row in rows) else None
        if plan is None:
            return [_as_tuple(conn.execute(self.stmt, row).first()) for row in rows]
        converters = self._converters.get(conn.dialect.name)
        if converters is None:
            converters = self._converters[conn.dialect.name] = self._result_processors(conn)
        out: list[tuple[Any, ...] | None] = []
        cursor = conn.connection.cursor()
        try:
            for row in rows:
                cursor.execute(plan.sql, plan.convert(row, {}))
                found = cursor.fetchone()
                out.append(None if found is None else tuple(
                    value if convert is None else convert(value) for value, convert in zip(found, converters,
                                                                                           strict=True)))
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, plan.sql, exc) from exc
        finally:
            cursor.close()
        return out

    def _result_processors(self, conn: Connection) -> list[Callable[[Any], Any] | None]:
        dialect = conn.dialect
        columns = self.stmt.selected_columns  # type: ignore[attr-defined]
        return [column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns]


def _as_tuple(row: Any) -> tuple[Any, ...] | None:
    return None if row is None else tuple(row)

"""Optional SQLite write-through persistence of one site's documents and naming counters."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class SqliteBackend:
    """Every write goes straight to SQLite (WAL); the in-memory store stays the source for reads."""

    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        # The store's lock serialises all access, so sharing the connection across threads is safe.
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS docs (doctype TEXT NOT NULL, name TEXT NOT NULL, data TEXT NOT NULL,"
            " PRIMARY KEY (doctype, name))"
        )
        self._conn.execute("CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        self._depth = 0

    def load(self) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
        docs = [(doctype, json.loads(data)) for doctype, data in self._conn.execute("SELECT doctype, data FROM docs")]
        counters = dict(self._conn.execute("SELECT key, value FROM counters"))
        return docs, counters

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group many writes (seeding) into one commit; nests."""
        if self._depth == 0:
            self._conn.execute("BEGIN")
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._conn.execute("COMMIT")

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """All of the writes inside, or none of them (a savepoint: works inside `transaction` too)."""
        self._conn.execute("SAVEPOINT atomic")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO atomic")
            self._conn.execute("RELEASE atomic")
            raise
        self._conn.execute("RELEASE atomic")

    def put(self, doctype: str, name: str, doc: dict[str, Any]) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO docs (doctype, name, data) VALUES (?, ?, ?)",
            (doctype, name, json.dumps(doc, default=str)),
        )

    def remove(self, doctype: str, name: str) -> None:
        self._conn.execute("DELETE FROM docs WHERE doctype = ? AND name = ?", (doctype, name))

    def set_counter(self, key: str, value: int) -> None:
        self._conn.execute("INSERT OR REPLACE INTO counters (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._conn.close()

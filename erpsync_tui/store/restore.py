"""Restoring the state database from a backup, and resetting sync state — the operator's runbook steps.

Both refuse while an engine holds the lease (it would go on from state that no longer exists), and both keep
a copy of the database they change, next to it. Neither can duplicate a document by itself: the state they
leave may not know documents both sites hold, and the engine re-pairs before it creates (engine/matching.py,
the recorded create attempts, the owner-and-content recognition of lost creates).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from erpsync_tui.store import control, sqlite
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import IDENTITY_EPOCH, SCHEMA_VERSION, Meta, utcnow
from erpsync_tui.store.sqlite import StoreError


class EngineRunning(StoreError):
    """An engine holds the lease on this database."""


def refuse_while_engine_runs(db: Database) -> None:
    status = control.engine_status(db)
    if status.mode != "stopped":
        raise EngineRunning(f"an engine holds the lease on {db.label} ({status.holder}, host {status.hostname}, "
                            f"pid {status.pid}): stop it first (systemctl stop erpsync, or quit the console)")


def keep_copy(db: Database, why: str) -> Path:
    """A copy of the live SQLite database beside it: `<name>.before-<why>-<UTC time>.db`."""
    if db.path is None:
        raise StoreError("only a SQLite state database can be copied here; use pg_dump for PostgreSQL")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    copy = db.path.with_name(f"{db.path.stem}.before-{why}-{stamp}{db.path.suffix or '.db'}")
    sqlite.backup(db.path, copy)
    return copy


def check_backup(path: Path) -> int:
    """The backup's schema version, after checking it is an intact state database this version can use."""
    integrity, version = sqlite.inspect_backup(path)
    if integrity != "ok":
        raise StoreError(f"backup {path} fails PRAGMA integrity_check ({integrity}); choose another backup")
    if version is None:
        raise StoreError(f"{path} is not an erpsync-tui state database (no schema version)")
    if version > SCHEMA_VERSION:
        raise StoreError(f"backup {path} has schema version {version}, newer than this erpsync-tui understands "
                         f"({SCHEMA_VERSION}); restore it with the version that made it")
    return version


def restore_database(db: Database, backup_file: Path) -> Path:
    """Replace the live state with `backup_file`; returns the copy kept of the database it replaced."""
    if db.path is None:
        raise StoreError("restore works on SQLite; for PostgreSQL use pg_restore, then `erpsync-tui sync`")
    check_backup(backup_file)
    refuse_while_engine_runs(db)
    db.dispose()  # no connection of ours may hold pages of the database being overwritten
    # Every writer of every process queues on this lock: no engine can take the lease while the state is swapped.
    with sqlite.WriterLock(db.path):
        refuse_while_engine_runs(db)  # one that started before we held the lock
        copy = keep_copy(db, "restore")
        sqlite.restore_into(backup_file, db.path)
    db.dispose()
    with db.write() as session:  # the restored state forgets what was paired after the backup: say since when
        session.merge(Meta(key=IDENTITY_EPOCH, value=utcnow().isoformat()))
    return copy

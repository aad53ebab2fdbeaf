"""SQLModel tables: every piece of state the engine and the console share.

Datetimes are aware UTC everywhere (`utcnow()`); SQLModel's UTC type stores them as UTC on SQLite (which
has no zone type) and as timestamptz on PostgreSQL, and hands them back aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

SCHEMA_VERSION = 1
IDENTITY_EPOCH = "identity_epoch"  # meta key: when a restore or reset last made the state forget pairs (UTC, ISO)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _json_field(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


def _optional_json_field() -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=True))


def _text_field(default: str | None = None) -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=default is None))


class QueueStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    DONE = "done"
    FAILED = "failed"  # waiting for its next attempt (next_attempt_at)
    DEAD = "dead"  # gave up after max attempts; needs an operator
    DISCARDED = "discarded"  # an operator closed it without syncing (kept apart from done: it was not synced)


class QueueKind(StrEnum):
    WEBHOOK = "webhook"
    SYNC = "sync"
    RESOLVE = "resolve"
    DELETE = "delete"


class RecordStatus(StrEnum):
    SYNCED = "synced"
    CONFLICT = "conflict"
    ERROR = "error"
    CREATING = "creating"  # a create was sent; its answer may have been lost (idempotent retry)
    DELETED = "deleted"
    # Matches two or more documents on the other site by the doctype's matching rules: neither paired nor created
    # until an operator cleans up (ERP009; `erpsync-tui match` lists them).
    AMBIGUOUS = "ambiguous"
    # Kept by the engine for the operator, neither synced nor created on the other site nor paired by matching
    # (ERP009): a document someone worked on that a rename made a second counterpart (engine/renames.py). Deleting
    # it on its site ends the mark.
    SET_APART = "set_apart"


class ConflictStatus(StrEnum):
    OPEN = "open"
    RESOLVING = "resolving"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class ActionStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # taken by an engine; its outcome is still to come (e.g. a resolution being written)
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"  # older than scheduler.action_max_age_seconds when an engine could take it: not replayed


class StatusCount(SQLModel, table=True):
    """How many rows of a table (`sync_record`, `queue_item`) hold each status: `status` reads these, not a COUNT.

    Kept by database triggers in the very transaction that inserts, deletes or changes a row's status
    (store/counts.py installs them), so a rollback or a crash mid-write leaves them as right as the rows.
    """

    __tablename__ = "status_count"
    source: str = Field(primary_key=True)  # the counted table
    status: str = Field(primary_key=True)
    n: int = 0


class Meta(SQLModel, table=True):
    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str


class SyncRecord(SQLModel, table=True):
    """One logical document kept in sync; its name on each site lives in `sync_name`."""

    __tablename__ = "sync_record"
    id: int | None = Field(default=None, primary_key=True)
    doctype: str = Field(index=True)
    status: str = Field(default=RecordStatus.SYNCED, index=True)
    # The normalised content both sides agreed on at the last sync: the base of three-way merges.
    base: dict[str, Any] | None = _optional_json_field()
    base_hash: str | None = None
    origin_site: str | None = None
    last_error: str | None = _text_field()
    error_code: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class SyncName(SQLModel, table=True):
    """The name, hash and `modified` of a synced document on one site (names differ across sites)."""

    __tablename__ = "sync_name"
    __table_args__ = (UniqueConstraint("site", "doctype", "name", name="uq_sync_name_site_doc"),)
    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="sync_record.id", index=True)
    site: str
    doctype: str
    name: str
    content_hash: str | None = None
    # No longer written (NULL): nothing read it, the merge base is the record's `base`. Kept so that databases
    # made before still open under the same schema.
    snapshot: dict[str, Any] | None = _optional_json_field()
    modified: str | None = None  # the site's own `modified` string after our last read or write
    synced_at: datetime = Field(default_factory=utcnow)


class CreateAttempt(SQLModel, table=True):
    """One insert request sent to create a record's counterpart, committed before the request goes out.

    Frappe has no idempotency key: if the answer is lost (timeout, crash), the created document can only be
    recognised afterwards — by the hash of exactly what we sent, or by its owner (our API user) and creation
    time. Kept until the record is synced.
    """

    __tablename__ = "create_attempt"
    id: int | None = Field(default=None, primary_key=True)
    record_id: int = Field(foreign_key="sync_record.id", index=True)
    doctype: str
    target_site: str
    payload_hash: str = Field(index=True)
    # What was sent, in canonical form: an edited copy is told apart from others by its likeness to this.
    payload: dict[str, Any] | None = _optional_json_field()
    sent_at: datetime = Field(default_factory=utcnow)


class SyncLog(SQLModel, table=True):
    __tablename__ = "sync_log"
    __table_args__ = (
        Index("ix_sync_log_level_id", "level", "id"),
        Index("ix_sync_log_doc", "doctype", "name"),
        Index("ix_sync_log_ts", "ts"),
    )
    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(default_factory=utcnow)
    level: str = "INFO"
    site: str | None = None
    doctype: str | None = None
    name: str | None = None
    direction: str | None = None  # e.g. "cloud→local"
    outcome: str | None = None  # created, updated, skipped, conflict, merged, failed, deleted, …
    error_code: str | None = None
    message: str = _text_field("")
    record_id: int | None = None
    queue_item_id: int | None = None


class QueueItem(SQLModel, table=True):
    __tablename__ = "queue_item"
    __table_args__ = (
        Index("ix_queue_status_next", "status", "next_attempt_at"),
        Index("ix_queue_status_created", "status", "created_at"),
        Index("ix_queue_status_lease", "status", "lease_until"),
        Index("ix_queue_dedupe_status", "dedupe_key", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = QueueKind.SYNC
    site: str | None = None
    doctype: str | None = None
    name: str | None = None
    payload: dict[str, Any] = _json_field()
    status: str = QueueStatus.PENDING
    attempts: int = 0
    max_attempts: int = 5
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_owner: str | None = None
    lease_until: datetime | None = None
    last_error: str | None = _text_field()
    error_code: str | None = None
    # Pending items with the same key coalesce: one sync covers every event for that document.
    dedupe_key: str | None = None
    coalesced: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class Conflict(SQLModel, table=True):
    __tablename__ = "conflict"
    __table_args__ = (Index("ix_conflict_status_id", "status", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    record_id: int | None = Field(default=None, index=True)
    doctype: str
    names: dict[str, str] = _json_field()  # site → document name on that site
    versions: dict[str, Any] = _json_field()  # site → normalised document
    modified: dict[str, str] = _json_field()  # site → `modified` read with the version
    base: dict[str, Any] | None = _optional_json_field()
    fields: list[str] = _json_field(list)
    status: str = ConflictStatus.OPEN
    resolution: dict[str, Any] | None = _optional_json_field()
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class HealthResult(SQLModel, table=True):
    """The latest result of each check (one row per check and target, updated in place)."""

    __tablename__ = "health_result"
    __table_args__ = (UniqueConstraint("check", "target", name="uq_health_check_target"),)
    id: int | None = Field(default=None, primary_key=True)
    check: str
    target: str = ""
    status: str = "ok"  # ok | warn | fail
    value: str = ""
    detail: str = _text_field("")
    error_code: str | None = None
    quick_fix: str = ""
    checked_at: datetime = Field(default_factory=utcnow)


class EngineLease(SQLModel, table=True):
    """Who runs the engine on this database; an expired lease may be taken over."""

    __tablename__ = "engine_lease"
    name: str = Field(primary_key=True, default="engine")
    holder: str
    hostname: str = ""
    pid: int = 0
    state: str = "running"  # running | paused
    acquired_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime = Field(default_factory=utcnow)
    info: dict[str, Any] = _json_field()  # circuits, receiver URL, version


class Watermark(SQLModel, table=True):
    """Incremental pull position per site and doctype; `kind="full"` rows checkpoint a full sync."""

    __tablename__ = "watermark"
    __table_args__ = (UniqueConstraint("site", "doctype", "kind", name="uq_watermark"),)
    id: int | None = Field(default=None, primary_key=True)
    site: str
    doctype: str
    kind: str = "incremental"
    value: str | None = None  # a Frappe `modified` string (site-local time)
    names_at_value: list[str] = _json_field(list)  # names already seen exactly at `value`
    updated_at: datetime = Field(default_factory=utcnow)


class OperatorAction(SQLModel, table=True):
    """An operator's command (and its audit record): the console writes it, the engine carries it out."""

    __tablename__ = "operator_action"
    __table_args__ = (Index("ix_operator_action_status_id", "status", "id"),)
    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow)
    actor: str
    host: str
    action: str  # one of store/actions.py's kinds: retry, retry_matching, discard, resolve, pause, resume, …
    target: str | None = None
    params: dict[str, Any] = _json_field()
    status: str = ActionStatus.PENDING
    result: str | None = _text_field()
    processed_at: datetime | None = None
    processed_by: str | None = None

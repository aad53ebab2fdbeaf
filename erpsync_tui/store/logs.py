"""Writing `sync_log` rows: every decision and outcome, redacted before it is stored."""

from __future__ import annotations

from sqlalchemy import insert
from sqlmodel import Session

from erpsync_tui.secrets import redact
from erpsync_tui.store.many import Many
from erpsync_tui.store.models import SyncLog, utcnow

MAX_MESSAGE = 4000
_INSERT = insert(SyncLog.__table__)  # type: ignore[attr-defined]  # built once: it runs for every log line
_INSERT_MANY = Many(_INSERT)


def add_log(
    session: Session,
    message: str,
    *,
    level: str = "INFO",
    site: str | None = None,
    doctype: str | None = None,
    name: str | None = None,
    direction: str | None = None,
    outcome: str | None = None,
    error_code: str | None = None,
    record_id: int | None = None,
    queue_item_id: int | None = None,
) -> None:
    values = {
        "ts": utcnow(), "level": level, "site": site, "doctype": doctype, "name": name, "direction": direction,
        "outcome": outcome, "error_code": error_code, "message": redact(message)[:MAX_MESSAGE],
        "record_id": record_id, "queue_item_id": queue_item_id,
    }
    session.connection().execute(_INSERT, values)


def add_logs(session: Session, entries: list[dict[str, object]]) -> None:
    """Many log lines (each the keyword arguments of `add_log`) in one executemany, same redaction and clipping."""
    if not entries:
        return
    ts = utcnow()
    keys = ("level", "site", "doctype", "name", "direction", "outcome", "error_code", "record_id", "queue_item_id")
    rows = [{"ts": ts, **{k: entry.get(k) for k in keys}, "level": entry.get("level") or "INFO",
             "message": redact(str(entry["message"]))[:MAX_MESSAGE]} for entry in entries]
    _INSERT_MANY.execute(session.connection(), rows)

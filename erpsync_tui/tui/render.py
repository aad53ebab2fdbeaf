"""Turning store rows into `Text` for the screens; every ERP-sourced string goes through `safe_text`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

from rich.text import Text

from erpsync_tui.store.models import HealthResult, SyncLog
from erpsync_tui.tui.safe import safe_text

LEVEL_STYLE = {"DEBUG": "dim", "INFO": "", "WARNING": "yellow", "ERROR": "bold red", "CRITICAL": "bold red reverse"}
LEVEL_TAG = {"DEBUG": "DBG", "INFO": "INF", "WARNING": "WRN", "ERROR": "ERR", "CRITICAL": "CRT"}
HEALTH_TAG = {"ok": ("✓", "ok", "green"), "warn": ("!", "WARN", "yellow"), "fail": ("✗", "FAIL", "bold red")}
STATUS_TAG = {"failed": ("↻", "failed", "yellow"), "dead": ("✗", "dead", "bold red"),
              "pending": ("·", "pending", ""), "in_progress": ("▶", "in progress", "cyan"),
              "done": ("✓", "done", "green"), "discarded": ("⊘", "discarded", "dim")}


def clock(ts: datetime | None) -> str:
    return ts.strftime("%H:%M:%S") if ts else "--:--:--"


CONFLICT_NUMBER = re.compile(r"\bconflict #(\d+)\b")


def conflict_number(row: SyncLog) -> int | None:
    """The conflict a log line is about ("conflict #4 on items; …"), read from the engine's own wording."""
    if row.outcome not in ("conflict", None) and row.error_code != "ERP009":
        return None
    found = CONFLICT_NUMBER.search(row.message or "")
    return int(found.group(1)) if found else None


def where_text(row: SyncLog, width: int | None = None) -> Text:
    """Which way the line's write went — `cloud → local` — or, for a line with no write, the site it is about."""
    direction = (row.direction or "").strip()
    if direction and "→" in direction:
        source, _, target = direction.partition("→")
        return safe_text(f"{source.strip()} → {target.strip()}", width=width)
    if direction:
        return safe_text(direction, width=width)  # "merge", "resolution": both sites
    return safe_text(row.site or "", width=width)


def level_text(level: str) -> Text:
    return Text(LEVEL_TAG.get(level, level[:3]), style=LEVEL_STYLE.get(level, ""))


def log_line(row: SyncLog) -> Text:
    """One log row for the dashboard tail: time, level word, then the document and message as data."""
    line = Text(clock(row.ts) + " ", style="dim")
    line.append_text(level_text(row.level))
    line.append(" ")
    if row.error_code:
        line.append(f"{row.error_code} ", style=LEVEL_STYLE.get(row.level, ""))
    place = where_text(row)
    if place.plain:
        line.append_text(place)
        line.append(" ")
    what = " ".join(part for part in (row.doctype, row.name) if part)
    if what:
        line.append_text(safe_text(what, "bold"))
        line.append(" ")
    line.append_text(safe_text(row.message))
    return line


def health_tag(status: str) -> Text:
    mark, word, style = HEALTH_TAG.get(status, ("?", status, ""))
    return Text(f"{mark} {word}", style=style)


def status_tag(status: str) -> Text:
    mark, word, style = STATUS_TAG.get(status, ("?", status, ""))
    return Text(f"{mark} {word}", style=style)


def health_summary(rows: Iterable[HealthResult], limit: int) -> Text:
    """Failing checks first (the query sorts them), one per line; `limit` lines at most."""
    rows = list(rows)
    out = Text()
    if not rows:
        return Text("no health results yet", style="dim")
    bad = [r for r in rows if r.status != "ok"]
    shown = bad[:limit] if bad else []
    for row in shown:
        out.append_text(health_tag(row.status))
        out.append(f" {row.check} ")
        out.append_text(safe_text(row.target, "bold"))
        out.append(" ")
        out.append_text(safe_text(row.value))
        out.append("\n")
    ok = len(rows) - len(bad)
    more = len(bad) - len(shown)
    tail = f"✓ {ok} ok" + (f", {more} more not shown" if more else "")
    out.append(tail, style="green" if not bad else "")
    return out

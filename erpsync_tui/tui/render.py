"""Turning store rows into `Text` for the screens; every ERP-sourced string goes through `safe_text`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from rich.text import Text

from erpsync_tui.store.models import SyncLog
from erpsync_tui.tui.health_view import CheckView
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


def health_summary(views: Iterable[CheckView], limit: int, *, engine_stopped: bool = False) -> Text:
    """Failing checks first, one per line with its age; `limit` lines at most. With no engine running the
    results are old news, and the summary says so instead of "✓ ok"."""
    views = list(views)
    if not views:
        return Text("no health results yet", style="dim")
    out = Text()
    if engine_stopped:
        newest = min((v.age for v in views if v.age is not None), default=None)
        out.append("! engine stopped — ", style="bold yellow")
        out.append(f"results below are {format_age(newest)} old\n" if newest is not None else "no live results\n")
        limit = max(limit - 1, 1)
    bad = [v for v in views if v.result.status != "ok" and not v.stale]
    stale = [v for v in views if v.stale and v.result.status != "ok"]
    shown = (bad + stale)[:limit]
    for view in shown:
        result = view.result
        out.append_text(Text("? stale", style="dim") if view.stale else health_tag(result.status))
        out.append(f" {result.check} ")
        out.append_text(safe_text(result.target, "bold"))
        out.append(" ")
        out.append_text(safe_text(result.value))
        age = "live" if view.source == "live" else f"{format_age(view.age)} ago" if view.age is not None else "now"
        out.append(f" ({age})", style="dim")
        out.append("\n")
    ok = sum(1 for v in views if v.result.status == "ok" and not v.stale)
    more = len(bad) + len(stale) - len(shown)
    tail = f"✓ {ok} ok" + (f", {more} more not shown" if more else "")
    out.append(tail, style="green" if not bad and not engine_stopped else "")
    return out


def format_age(age: timedelta | None) -> str:
    from erpsync_tui.tui.data import format_age as fmt

    return fmt(age)


def rejected_webhooks_line(recent: dict[str, int], window_minutes: int) -> Text | None:
    """"✗ 3 webhooks refused (15 min): bad_signature 3" from the running engine's lease, or None when none were.

    A site signing with another secret is otherwise silent: its events stop and nothing fails on our side.
    Reasons come from the receiver (a fixed vocabulary) but are escaped like any stored text.
    """
    refused = {reason: n for reason, n in recent.items() if isinstance(n, int) and n > 0}
    if not refused:
        return None
    total = sum(refused.values())
    out = Text(f"✗ {total} webhook{'s' if total != 1 else ''} refused ({window_minutes} min): ", style="bold red")
    out.append_text(safe_text(", ".join(f"{reason} {n}" for reason, n in sorted(refused.items()))))
    return out

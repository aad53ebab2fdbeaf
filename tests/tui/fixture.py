"""A deterministic state database for snapshots, the README screenshot and manual tries (`python -m`).

Fixed timestamps around `FIXTURE_NOW`, so a console given `now=lambda: FIXTURE_NOW` renders the same every
time. It contains hostile ERP text on purpose (markup and terminal escapes in names and messages).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from erpsync_tui.errors import quick_fix
from erpsync_tui.store.db import Database
from erpsync_tui.store.models import Conflict, EngineLease, HealthResult, QueueItem, SyncLog

FIXTURE_NOW = datetime(2025, 3, 4, 3, 0, 0, tzinfo=UTC)
HOSTILE_MARKUP = "[bold red]x[/]"
HOSTILE_OSC = "Evil \x1b]8;;http://evil\x1b\\Corp\x1b[31m"


def _customer(name: str, **extra: Any) -> dict[str, Any]:
    return {"customer_name": name, "customer_type": "Company", "customer_group": "Commercial", **extra}


def _items(*rows: tuple[str, int, float]) -> list[dict[str, Any]]:
    return [{"item_code": code, "qty": qty, "rate": rate, "idx": i} for i, (code, qty, rate) in enumerate(rows, 1)]


def seed(db: Database, *, now: datetime = FIXTURE_NOW, lease: str = "running") -> None:
    """Fill an empty, opened database with a small, fixed picture of a sync in trouble."""
    at = lambda minutes: now - timedelta(minutes=minutes)  # noqa: E731
    with db.write() as s:
        if lease != "none":
            s.add(EngineLease(holder="serve-7f3a", hostname="erp-sync-01", pid=4242, state=lease,
                              acquired_at=at(600), heartbeat_at=at(0.1), expires_at=now + timedelta(days=3650),
                              info={"circuits": {"cloud": "closed", "local": "open"}}))
        for i in range(40):
            s.add(QueueItem(site="cloud", doctype="Customer", name=f"CUST-{i:05d}", status="done", attempts=1,
                            created_at=at(90 - i), updated_at=at(89 - i), finished_at=at(89 - i)))
        for i in range(5):
            s.add(QueueItem(site="local", doctype="Item", name=f"ITEM-{i:04d}", status="pending",
                            created_at=at(7 - i), next_attempt_at=at(7 - i)))
        s.add(QueueItem(site="cloud", doctype="Sales Order", name="SO-2025-00117", status="in_progress",
                        attempts=1, created_at=at(2), lease_owner="serve-7f3a", lease_until=now))
        failures = [
            ("failed", "cloud", "Item", "ITEM-0099", "ERP005", 2, "429 Too Many Requests; retry after 30 s"),
            ("failed", "cloud", "Customer", HOSTILE_MARKUP, "ERP007", 3, "read timed out after 30.0 s"),
            ("failed", "local", "Sales Order", "SO-2025-00101", "ERP007", 1, "read timed out after 30.0 s"),
            ("dead", "local", "Customer", HOSTILE_OSC, "ERP002", 5,
             "401 Unauthorized: Invalid API key \x1b[2J[link=http://evil]here[/link]"),
            ("dead", "local", "Sales Order", "SO-2025-00042", "ERP008", 5,
             "MandatoryError: [Sales Order, SO-2025-00042]: delivery_date"),
        ]
        for index, (status, site, doctype, name, code, attempts, error) in enumerate(failures):
            s.add(QueueItem(site=site, doctype=doctype, name=name, status=status, attempts=attempts, max_attempts=5,
                            error_code=code, last_error=error, created_at=at(50 - index), updated_at=at(20 - index),
                            next_attempt_at=at(-0.5 * (index + 1))))
        s.flush()
        _logs(s, at)
        _conflicts(s, at)
        _health(s, now)


def _logs(s: Any, at: Any) -> None:
    lines = [
        ("INFO", "cloud", "Customer", "CUST-00031", "created", None, "created on local as CUST-00931"),
        ("INFO", "local", "Item", "ITEM-0007", "updated", None, "updated on cloud (3 fields)"),
        ("WARNING", "cloud", "Item", "ITEM-0099", "failed", "ERP005", "rate limited by cloud; retry in 30 s"),
        ("INFO", "cloud", "Customer", HOSTILE_MARKUP, "updated", None, "updated on local: customer_name"),
        ("ERROR", "local", "Customer", HOSTILE_OSC, "dead", "ERP002",
         "dead after 5 attempts: 401 Unauthorized \x1b]0;pwned\x07[bold]no[/bold]"),
        ("WARNING", "cloud", "Customer", "Acme Trading", "conflict", "ERP009",
         "conflict #1 on credit_limit, territory; waiting for an operator"),
        ("WARNING", "cloud", "Sales Order", "SO-2025-00077", "conflict", "ERP009",
         "conflict #2 on items; waiting for an operator"),
        ("INFO", "cloud", "Sales Order", "SO-2025-00090", "merged", None, "merged disjoint edits from both sites"),
        ("ERROR", "local", "Sales Order", "SO-2025-00042", "dead", "ERP008",
         "dead after 5 attempts: MandatoryError: delivery_date"),
        ("INFO", None, None, None, "action_pause", None, "operator ops@laptop: pause → paused"),
        ("INFO", None, None, None, "action_resume", None, "operator ops@laptop: resume → running"),
        ("INFO", "local", "Item", "ITEM-0003", "skipped", None, "already in sync"),
    ]
    for i, (level, site, doctype, name, outcome, code, message) in enumerate(lines):
        record = 1 if name == "Acme Trading" else 2 if name == "SO-2025-00077" else None
        item = 50 if name == HOSTILE_OSC else None
        s.add(SyncLog(ts=at(30 - i * 2.5), level=level, site=site, doctype=doctype, name=name, outcome=outcome,
                      error_code=code, message=message, record_id=record, queue_item_id=item))


def _conflicts(s: Any, at: Any) -> None:
    note_base = "Deliver to the back door.\nCall before arriving.\nInvoices by email only."
    base = _customer("Acme Trading", territory="France", credit_limit=50000, customer_details=note_base)
    cloud = {**base, "territory": "Japan", "credit_limit": 75000,
             "customer_details": note_base.replace("back door", "loading dock"), "website": HOSTILE_MARKUP}
    local = {**base, "territory": "Greece", "credit_limit": 60000, "mobile_no": HOSTILE_OSC}
    s.add(Conflict(record_id=1, doctype="Customer", names={"cloud": "Acme Trading", "local": "Acme Trading"},
                   versions={"cloud": cloud, "local": local}, modified={"cloud": "2025-03-04 02:40:00.000000",
                                                                         "local": "2025-03-04 02:41:00.000000"},
                   base=base, fields=["credit_limit", "territory"], created_at=at(16)))
    so_base = {"customer": "Acme Trading", "delivery_date": "2025-03-10",
               "items": _items(("BOLT-10", 100, 0.25), ("NUT-10", 100, 0.1))}
    so_cloud = {**so_base, "items": _items(("BOLT-10", 120, 0.25), ("NUT-10", 100, 0.1), ("WASHER-10", 50, 0.05))}
    so_local = {**so_base, "items": _items(("BOLT-10", 150, 0.22), ("NUT-10", 100, 0.1))}
    s.add(Conflict(record_id=2, doctype="Sales Order", names={"cloud": "SO-2025-00077", "local": "SO-2025-00063"},
                   versions={"cloud": so_cloud, "local": so_local}, modified={}, base=so_base, fields=["items"],
                   created_at=at(12)))


def _health(s: Any, now: datetime) -> None:
    rows = [
        ("site.reachable", "cloud", "ok", "42 ms", "answered ping in 42 ms", None),
        ("site.reachable", "local", "ok", "3 ms", "answered ping in 3 ms", None),
        ("site.authenticated", "cloud", "ok", "sync@cloud", "authenticated as sync@cloud", None),
        ("site.authenticated", "local", "fail", "rejected", "401: Invalid API key", "ERP002"),
        ("site.circuit", "local", "fail", "open", "5 consecutive failures", "ERP001"),
        ("engine.running", "engine", "ok", "running", "serve-7f3a on erp-sync-01", None),
        ("queue.dead", "queue", "warn", "2 items", "2 dead items need an operator", "ERP010"),
        ("conflicts.open", "conflicts", "warn", "2 conflicts", "2 conflicts wait for an operator", "ERP009"),
        ("queue.backlog", "queue", "ok", "9 items", "below alerts.backlog_max (1000)", None),
    ]
    for check, target, status, value, detail, code in rows:
        s.add(HealthResult(check=check, target=target, status=status, value=value, detail=detail, error_code=code,
                           quick_fix=quick_fix(code), checked_at=now - timedelta(seconds=20)))


async def _screenshot(size: tuple[int, int]) -> str:
    import tempfile
    from pathlib import Path

    from erpsync_tui.config import AppConfig
    from erpsync_tui.store import open_database
    from erpsync_tui.tui.app import ConsoleApp

    from .testing import wait_loaded

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(f"sqlite:///{Path(tmp) / 'state.db'}")
        seed(db)
        config = AppConfig.model_validate({"sites": {"cloud": {"url": "https://erp.example.com"},
                                                     "local": {"url": "http://erp.branch.lan:8000"}}})
        app = ConsoleApp(db, config, mode="attached", actor="ops", host="demo", now=lambda: FIXTURE_NOW)
        async with app.run_test(size=size) as pilot:
            await wait_loaded(pilot)
            dashboard = app.screen
            # A plausible throughput history (items finished per refresh) so the sparkline has a shape.
            dashboard.throughput.history = [float(v) for v in (3, 5, 4, 8, 12, 9, 7, 11, 15, 14, 10, 6, 9, 13, 17,
                                                               16, 12, 8, 5, 7, 10, 14, 18, 21, 19, 15, 11, 9, 12, 16)]
            dashboard.throughput.last_done = 40
            await wait_loaded(pilot)
            await pilot.pause(0.2)
            svg = app.export_screenshot(title="erpsync-tui console")
        db.dispose()
    return svg


if __name__ == "__main__":  # PYTHONPATH=tests python -m tui.fixture docs/console.svg
    import asyncio
    import sys
    from pathlib import Path

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console.svg")
    target.write_text(asyncio.run(_screenshot((120, 36))), encoding="utf-8")

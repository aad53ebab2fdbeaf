"""The logs screen: direction on each line, one line per conflict, enter jumps by the conflict's number."""

from __future__ import annotations

from erpsync_tui.store.models import SyncLog
from erpsync_tui.tui.modals import TextViewScreen

from .testing import screen_text, wait_for, wait_loaded


def add_lines(db) -> None:
    from sqlmodel import select

    with db.write() as s:
        for old in s.exec(select(SyncLog).where(SyncLog.name == "SO-2025-00077")).all():
            s.delete(old)  # the fixture's line carries a record id; these lines do not
        s.add(SyncLog(level="INFO", site="cloud", doctype="Customer", name="CUST-00001", direction="cloud→local",
                      outcome="updated", message="updated on local: territory"))
        for _ in range(3):  # the engine meets the open conflict #2 again at each sync; no record id on the line
            s.add(SyncLog(level="WARNING", site="cloud", doctype="Sales Order", name="SO-2025-00077",
                          outcome="conflict", error_code="ERP009",
                          message="conflict #2 on items; waiting for an operator"))
        s.add(SyncLog(level="INFO", site="local", doctype="Item", name="ITEM-0001", outcome="skipped",
                      message="a long line " + "with many words " * 30 + "THE END"))


async def test_direction_one_line_per_conflict_and_enter_jumps_from_a_conflict_line(make_app, fixture_db) -> None:
    add_lines(fixture_db)
    app = make_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("l")
        await wait_loaded(pilot)
        logs = app.screen
        text = screen_text(app)
        assert "cloud → local" in text  # which way the write went, not only the site it came from
        repeated = [r for r in logs.rows if r.message.startswith("conflict #2") and r.record_id is None]
        assert len(repeated) == 1 and "(logged 3×)" in text
        table = logs.query_one("#log-table")
        table.move_cursor(row=[r.id for r in logs.rows].index(repeated[0].id))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "conflicts")
        await wait_for(pilot, lambda: app.screen.shown_id == 2)
        await pilot.press("escape", "l")
        await wait_for(pilot, lambda: app.current_mode == "logs")
        table.move_cursor(row=len(logs.rows) - 1)  # the long line: enter shows all of it
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, TextViewScreen))
        assert "THE END" in screen_text(app)


async def test_message_column_follows_the_terminal_width(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("l")
        await wait_loaded(pilot)
        logs = app.screen
        narrow = logs.message_width
        assert "doctype" not in logs.query_one("#log-table").columns  # below 100 columns it makes room
        await pilot.resize_terminal(160, 40)
        await wait_for(pilot, lambda: "doctype" in logs.query_one("#log-table").columns)
        assert logs.message_width > narrow + 40
        await wait_for(pilot, lambda: "waiting for an operator" in screen_text(app))
        await pilot.resize_terminal(60, 20)
        await wait_for(pilot, lambda: "doctype" not in logs.query_one("#log-table").columns)
        assert logs.message_width >= 12 and len(logs.rows) == 12

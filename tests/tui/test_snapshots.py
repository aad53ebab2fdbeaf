"""Snapshots of every screen at 80×24, 160×48 and 60×20 on the fixed fixture database (frozen clock)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from erpsync_tui.store.models import OperatorAction

from .fixture import FIXTURE_NOW
from .testing import wait_for, wait_loaded

SIZES = [(80, 24), (160, 48), (60, 20)]
# The keys that reach each screen from the dashboard.
SCREENS = {"dashboard": [], "conflicts": ["c"], "conflict-rows": ["c", "n"], "queue": ["q"], "logs": ["l"],
           "health": ["h"], "actions": ["a"], "help": ["q", "question_mark"]}


def add_actions(db) -> None:
    with db.write() as s:
        s.add(OperatorAction(actor="ops", host="laptop", action="pause", target="engine", params={}, status="done",
                             result="paused", created_at=FIXTURE_NOW - timedelta(minutes=9),
                             processed_at=FIXTURE_NOW - timedelta(minutes=9), processed_by="serve-7f3a"))
        s.add(OperatorAction(actor="ops", host="laptop", action="retry", target="queue item 47",
                             params={"ids": [47]}, status="failed", result="ERP005 429 Too Many Requests",
                             created_at=FIXTURE_NOW - timedelta(minutes=2)))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare, make_app, fixture_db, screen: str, size: tuple[int, int]) -> None:
    if screen == "actions":
        add_actions(fixture_db)
    app = make_app()

    async def settle(pilot) -> None:
        await wait_loaded(pilot)
        for key in SCREENS[screen]:
            await pilot.press(key)
            if key == "n":
                await wait_for(pilot, lambda: app.screen.shown_id == 2)
            elif key != "question_mark":
                await wait_loaded(pilot)
        if screen.startswith("conflict"):
            await wait_for(pilot, lambda: bool(app.screen.diffs))
        await pilot.pause(0.2)
        app.screen.set_focus(app.screen.focused)  # no blinking input cursor in any of these screens

    assert snap_compare(app, terminal_size=size, run_before=settle)

"""Snapshots of every screen at 80×24 and 160×48 on the fixed fixture database (frozen clock)."""

from __future__ import annotations

import pytest

from erpsync_tui.tui.testing import wait_for, wait_loaded

SIZES = [(80, 24), (160, 48)]
# The keys that reach each screen from the dashboard.
SCREENS = {"dashboard": [], "conflicts": ["c"], "queue": ["q"], "logs": ["l"], "health": ["h"],
           "help": ["q", "question_mark"]}


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen_snapshot(snap_compare, make_app, screen: str, size: tuple[int, int]) -> None:
    app = make_app()

    async def settle(pilot) -> None:
        await wait_loaded(pilot)
        for key in SCREENS[screen]:
            await pilot.press(key)
            if key != "question_mark":
                await wait_loaded(pilot)
        if screen == "conflicts":
            await wait_for(pilot, lambda: bool(app.screen.diffs))
        await pilot.pause(0.2)
        app.screen.set_focus(app.screen.focused)  # no blinking input cursor in any of these screens

    assert snap_compare(app, terminal_size=size, run_before=settle)

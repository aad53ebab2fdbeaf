"""The queue screen: the cursor follows its item, tabs per state, filters that refuse typos, full error text."""

from __future__ import annotations

import pytest

from erpsync_tui.store.models import QueueItem
from erpsync_tui.tui.data import FilterError, QueueFilter
from erpsync_tui.tui.modals import PromptScreen, TextViewScreen

from .test_console import record_notifications
from .testing import screen_text, wait_for, wait_loaded


def test_filter_refuses_unknown_keys_and_values() -> None:
    for typo, word in (("status:deadd", "deadd"), ("foo:bar", "foo"), ("code:XYZ", "XYZ"), ("site:moon", "moon")):
        with pytest.raises(FilterError, match=word):
            QueueFilter.parse(typo, sites=("cloud", "local"))
    flt = QueueFilter.parse('CUST-0001 status:retrying,dead doctype:"Sales Order"', sites=("cloud", "local"))
    assert (flt.name, flt.statuses, flt.doctype) == ("CUST-0001", ("failed", "dead"), "Sales Order")
    assert QueueFilter.parse(flt.describe()) == flt  # what `/` shows again parses back to the same filter


async def test_cursor_stays_on_its_item_while_rows_arrive(make_app, fixture_db) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("q")
        await wait_loaded(pilot)
        screen = app.screen
        table = screen.query_one("#queue-table")
        await pilot.press("down", "down")
        reading = screen._selected().id
        with fixture_db.write() as s:  # newer failures arrive: they sort above the item being read
            for n in range(3):
                s.add(QueueItem(site="cloud", doctype="Item", name=f"NEW-{n}", status="failed", attempts=1,
                                error_code="ERP007", last_error="timed out"))
        await wait_for(pilot, lambda: "NEW-2" in screen_text(app))
        assert screen._selected().id == reading
        assert table.get_row_index(str(reading)) == table.cursor_row == 5
        shown = record_notifications(app)
        await pilot.press("r")  # retries the item read, not the one now at its old position
        await wait_for(pilot, lambda: any("retry sent" in n for n in shown))
    from sqlmodel import select

    from erpsync_tui.store.models import OperatorAction

    with fixture_db.read() as s:
        action = s.exec(select(OperatorAction)).one()
    assert action.params == {"ids": [reading]}


async def test_tabs_filters_and_the_border_name_what_is_shown(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("q")
        await wait_loaded(pilot)
        screen = app.screen
        table = screen.query_one("#queue-table")
        await pilot.press("5")
        await wait_for(pilot, lambda: len(screen.items) == 40)
        assert "status:done" in table.border_title and "[5 done 40]" in screen_text(app)
        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        assert app.screen.query_one("#prompt-input").value == "status:done"  # the whole filter comes back
        await pilot.press("ctrl+a", "ctrl+k", *"status:deadd", "enter")
        await wait_for(pilot, lambda: any("unknown status 'deadd'" in str(n.message) for n in app._notifications))
        assert screen.filter.statuses == ("done",)  # a refused filter changes nothing
        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("ctrl+a", "ctrl+k", *"status:all CUST-0003", "enter")
        await wait_for(pilot, lambda: [i.name for i in screen.items.values()] == ["CUST-00030", "CUST-00031",
                                                                                   "CUST-00032", "CUST-00033",
                                                                                   "CUST-00034", "CUST-00035",
                                                                                   "CUST-00036", "CUST-00037",
                                                                                   "CUST-00038", "CUST-00039"][::-1])
        assert "name:CUST-0003" in table.border_title
        await pilot.press("0")  # a tab keeps the rest of the filter
        await wait_for(pilot, lambda: "status:failed,dead name:CUST-0003" in table.border_title)
        await pilot.press("slash")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("ctrl+a", "ctrl+k", "enter")  # empty: failed and dead items, nothing else
        await wait_for(pilot, lambda: len(screen.items) == 5)
        await pilot.press("enter")  # the full error of the dead item with the hostile text
        await wait_for(pilot, lambda: isinstance(app.screen, TextViewScreen))


async def test_screens_are_mounted_ahead_so_the_first_visit_shows_the_diff_at_once(make_app) -> None:
    app = make_app(prewarm=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await wait_for(pilot, lambda: {"conflicts", "queue"} <= set(app._screen_stacks))
        conflicts = app.screen_of("conflicts")
        await wait_for(pilot, lambda: conflicts.shown_id == 1)  # its data loaded in the background too
        assert app.current_mode == "dashboard"
        await pilot.press("c")
        assert app.screen is conflicts and conflicts.diffs  # no compose, no load: the diff is there already


async def test_a_prewarmed_screen_looks_the_same_as_one_mounted_on_its_first_visit(make_app) -> None:
    """The prewarm skips Textual's stylesheet refresh on the first switch (app._mark_styled): the frame must be the
    one a screen mounted on its visit shows, at each size's breakpoints."""
    for size in ((160, 48), (80, 24)):
        seen = []
        for prewarm in (True, False):
            app = make_app(prewarm=prewarm)
            async with app.run_test(size=size) as pilot:
                await wait_loaded(pilot)
                if prewarm:
                    await wait_for(pilot, lambda app=app: "conflicts" in app._screen_stacks
                                   and app.screen_of("conflicts").shown_id == 1)
                    await pilot.pause(0.2)
                await pilot.press("c")
                await wait_for(pilot, lambda app=app: bool(getattr(app.screen, "diffs", None)))
                await pilot.pause(0.3)
                seen.append(screen_text(app))
        assert seen[0] == seen[1], size

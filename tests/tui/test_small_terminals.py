"""Small terminals and help: one-line header, the note on what is hidden, the diff keeps its rows, `:` commands."""

from __future__ import annotations

from erpsync_tui.store.control import EngineStatus
from erpsync_tui.tui.screens.base import header_text

from .testing import screen_text, wait_for, wait_loaded


def test_header_fits_one_line_even_attached_to_a_long_host_name() -> None:
    status = EngineStatus(mode="running", hostname="erp-sync-primary-01.datacenter.example.internal", pid=4242,
                          info={"circuits": {"cloud": "closed", "local": "open"}})
    for width in (60, 80, 160):
        text = header_text(status, mode="attached", readonly=False, screen="Queue", width=width)
        assert "\n" not in text.plain and text.cell_len <= width
        assert "RUNNING" in text.plain and "OPEN" in text.plain


async def test_60x20_says_what_is_hidden_and_the_diff_keeps_five_rows(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(60, 20)) as pilot:
        await wait_loaded(pilot)
        assert "60×20 < 80×24" in screen_text(app)
        await pilot.press("c")
        await wait_for(pilot, lambda: bool(app.screen.diffs))
        await pilot.pause(0.2)
        diff = app.screen.query_one("#diff")
        assert diff.scrollable_content_region.height - 1 >= 5  # rows below the column header
        header = screen_text(app).splitlines()[0]
        assert "RUNNING" in header and "serve@" in header
        await pilot.resize_terminal(100, 30)
        await wait_for(pilot, lambda: "< 80×24" not in screen_text(app))


async def test_help_lists_the_colon_commands_and_what_the_console_is_about(make_app) -> None:
    app = make_app(about="demo database: /tmp/x/state.db")
    async with app.run_test(size=(100, 50)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("colon", *"help", "enter")
        await wait_for(pilot, lambda: "Keys — dashboard" in screen_text(app))
        assert "demo database: /tmp/x/state.db" in screen_text(app)
        body = str(app.screen.query_one("#help-text").content)  # the whole help, also what needs scrolling
        assert ":requeue-stuck" in body and ":sync [doctype]" in body and ":actions" in body
        assert body.index("Commands") > body.index("Help")  # after the keys


async def test_e_on_a_multi_line_value_opens_a_text_area_and_keeps_every_line(make_app) -> None:
    from erpsync_tui.tui.modals import TextEditScreen

    app = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("c")
        await wait_for(pilot, lambda: bool(app.screen.diffs))
        screen = app.screen
        view = screen.query_one("#diff")
        view.move_cursor(row=list(view.lines).index("f|customer_details"))
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, TextEditScreen))
        area = app.screen.query_one("#text-edit-area")
        assert area.text.count("\n") == 2  # all three lines, not the first one only
        area.text = area.text + "\nRing twice."
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "customer_details" in view.resolution.choices)
        kind, value = view.resolution.choices["customer_details"]
        assert kind == "value" and value.endswith("Call before arriving.\nInvoices by email only.\nRing twice.")


async def test_breakpoint_rules_apply_at_each_size(make_app) -> None:
    """app.tcss's size rules (`ConflictsScreen.-wide.-tall DetailPane`, `….-short …`) take effect: the breakpoint
    classes are set (ConsoleApp.HORIZONTAL_/VERTICAL_BREAKPOINTS) and the screen-scoped selectors match."""
    expected = {(160, 48): (12, 10), (80, 24): (5, 10), (60, 20): (3, 8)}  # detail pane, dashboard top panels
    for size, (detail_height, dash_top) in expected.items():
        app = make_app()
        async with app.run_test(size=size) as pilot:
            await wait_loaded(pilot)
            assert app.screen.query_one("#dash-top").outer_size.height == dash_top
            await pilot.press("c")
            await wait_for(pilot, lambda app=app: bool(app.screen.diffs))
            await pilot.pause(0.1)
            assert app.screen.query_one("#detail-pane").outer_size.height == detail_height, size

"""The console against a seeded SQLite file: safety of ERP text, read-only mode, keys, help, `:`, filters."""

from __future__ import annotations

import os
import signal

from sqlmodel import select

from erpsync_tui.store.models import OperatorAction
from erpsync_tui.tui.data import QueueFilter
from erpsync_tui.tui.modals import ConfirmScreen, PromptScreen
from erpsync_tui.tui.safe import safe_text
from erpsync_tui.tui.themes import load_themes, theme_dirs

from .conftest import offline_config
from .fixture import HOSTILE_MARKUP, HOSTILE_OSC
from .testing import screen_text, wait_for, wait_loaded

VISIBLE_OSC = "Evil ␛]8;;http://evil␛\\Corp"


def actions(db) -> list[OperatorAction]:
    with db.read() as s:
        return list(s.exec(select(OperatorAction)).all())


def notifications(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


# ------------------------------------------------------------------------------------------------ pure helpers


def test_safe_text_neutralises_markup_and_escapes() -> None:
    assert safe_text(HOSTILE_MARKUP).plain == HOSTILE_MARKUP
    assert safe_text(HOSTILE_MARKUP).spans == []
    shown = safe_text("a\x1b[31mb\x07c\x9bd\ne").plain
    assert shown == "a␛[31mb␇c<9B>d↵e"
    assert all(ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in safe_text(HOSTILE_OSC).plain)
    assert safe_text("x" * 50, width=10).plain == "x" * 9 + "…"


def test_queue_filter_parses_operator_syntax() -> None:
    flt = QueueFilter.parse('code:erp002 site:local doctype:"Sales Order"')
    assert (flt.error_code, flt.site, flt.doctype) == ("ERP002", "local", "Sales Order")
    assert QueueFilter.parse("Customer status:dead").statuses == ("dead",)
    assert QueueFilter.parse("").action_params() == {"statuses": ["failed", "dead"]}


def test_bundled_themes_load() -> None:
    themes = load_themes(theme_dirs())
    assert {"erpsync-dark", "erpsync-light", "erpsync-contrast"} <= set(themes)
    assert themes["erpsync-light"].dark is False


# ------------------------------------------------------------------------------------------------ app


async def test_hostile_text_renders_literally_everywhere(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        dashboard = screen_text(app)
        assert HOSTILE_MARKUP in dashboard and VISIBLE_OSC in dashboard
        await pilot.press("q")
        await wait_loaded(pilot)
        queue = screen_text(app)
        assert HOSTILE_MARKUP in queue and "Evil ␛]8;;http://evil␛\\Corp" in queue
        await pilot.press("down")  # the dead item with the hostile error: its full text is in the detail pane
        await pilot.pause(0.1)
        assert "␛[2J[link=http://evil]here[/link]" in screen_text(app)
        await pilot.press("escape", "c")
        await wait_loaded(pilot)
        await wait_for(pilot, lambda: "website" in screen_text(app))
        diff = screen_text(app)
        assert HOSTILE_MARKUP in diff and "Evil ␛]8;;http://evil␛\\Corp" in diff
        await pilot.press("escape", "l")
        await wait_loaded(pilot)
        assert HOSTILE_MARKUP in screen_text(app)
        svg = app.export_screenshot()
        assert "\x1b" not in svg and "\x07" not in svg


def record_notifications(app) -> list[str]:
    """Every message the app shows from now on (app._notifications forgets them when they time out)."""
    shown: list[str] = []
    original = app.notify

    def notify(message, *args, **kwargs):
        shown.append(str(message))
        return original(message, *args, **kwargs)

    app.notify = notify
    return shown


async def press_expecting_refusal(pilot, shown: list[str], *keys: str) -> None:
    """Press `keys` and wait for one more read-only refusal (the keys land in order, however slow the run)."""
    before = sum(n.startswith("read-only console") for n in shown)
    await pilot.press(*keys)
    await wait_for(pilot, lambda: sum(n.startswith("read-only console") for n in shown) > before)


async def test_readonly_refuses_every_action_and_writes_none(make_app, fixture_db) -> None:
    app = make_app(readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        shown = record_notifications(app)
        await wait_loaded(pilot)
        assert "READ-ONLY" in screen_text(app)
        for keys in (["P"], ["space"], ["S"]):
            await press_expecting_refusal(pilot, shown, *keys)
        await pilot.press("q")
        await wait_loaded(pilot)
        for keys in (["r"], ["R"], ["d"], ["s"]):  # refused at once: no confirmation is asked first
            await press_expecting_refusal(pilot, shown, *keys)
        await pilot.press("escape", "c")
        await wait_loaded(pilot)
        await wait_for(pilot, lambda: "Acme Trading" in screen_text(app))  # the first conflict is shown
        await press_expecting_refusal(pilot, shown, "C", "a")
        await pilot.press("colon")
        await wait_for(pilot, lambda: isinstance(app.screen, PromptScreen) and app.focused is not None)
        await press_expecting_refusal(pilot, shown, *"pause", "enter")
        assert sum(n.startswith("read-only console") for n in shown) == 9
        assert not isinstance(app.screen, ConfirmScreen)  # nothing was asked that would be refused anyway
    assert actions(fixture_db) == []


async def test_pause_key_writes_an_operator_action(make_app, fixture_db) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: len(actions(fixture_db)) == 1)
    (action,) = actions(fixture_db)
    assert (action.action, action.actor, action.host, action.status) == ("pause", "ops", "test-host", "pending")


async def test_help_lists_the_current_screens_keys_with_the_user_keymap(make_app) -> None:
    app = make_app(config=offline_config(keymap={"retry": "x"}))
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("q")
        await wait_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "Keys — queue" in text
        for description in ("Retry all shown", "Discard", "Requeue stuck", "Filter", "Quit", "Help"):
            assert description in text
        assert any(line.strip("│█ ").startswith("x ") and "Retry" in line for line in text.splitlines())
        assert "←cloud" not in text  # another screen's keys are not listed
        await pilot.press("escape")
        await pilot.press("escape", "c")
        await wait_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)
        assert "←cloud" in screen_text(app) and "Retry all shown" not in screen_text(app)


async def test_colon_jumps_to_a_screen_by_name(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        expected = {"logs": "logs", "hea": "health", "con": "conflicts", "que": "queue", "d": "dashboard"}
        for typed, mode in expected.items():  # full names and unambiguous prefixes
            await pilot.press("colon", *typed, "enter")
            await pilot.pause(0.1)
            assert app.current_mode == mode
        await pilot.press("colon", *"zz", "enter")
        await pilot.pause(0.1)
        assert any("unknown command" in n for n in notifications(app))


async def test_log_filter_and_level_toggles(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("l")
        await wait_loaded(pilot)
        logs = app.screen
        assert len(logs.rows) == 12
        await pilot.press("slash", *"ITEM-0099", "enter")
        await wait_for(pilot, lambda: len(logs.rows) == 1)
        assert logs.rows[0].name == "ITEM-0099"
        await pilot.press("slash", "ctrl+a", "ctrl+k", "enter")
        await wait_for(pilot, lambda: len(logs.rows) == 12)
        await pilot.press("1")  # INFO off
        await wait_for(pilot, lambda: len(logs.rows) == 5)
        assert {r.level for r in logs.rows} == {"WARNING", "ERROR"}
        await pilot.press("2")  # WARNING off too
        await wait_for(pilot, lambda: {r.level for r in logs.rows} == {"ERROR"})


async def test_enter_on_a_log_line_jumps_to_its_conflict(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("l")
        await wait_loaded(pilot)
        logs = app.screen
        index = next(i for i, r in enumerate(logs.rows) if r.name == "SO-2025-00077")
        logs.query_one("#log-table").move_cursor(row=index)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "conflicts")
        await wait_for(pilot, lambda: app.screen.shown_id == 2)
        assert "[3 rows]" in screen_text(app)


async def test_sighup_exits_cleanly(make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(pilot, lambda: app._exit_renderables is not None or not app.is_running, limit=5)
    assert app.return_code == 0

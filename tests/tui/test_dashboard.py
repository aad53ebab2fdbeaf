"""The dashboard: webhooks the running engine's receiver refused are on it, not only in the health checks; so is the
count of webhooks it skipped as echoes of its own writes."""

from __future__ import annotations

from sqlmodel import select

from erpsync_tui.store.models import EngineLease

from .testing import screen_text, wait_for, wait_loaded


def engine_reports(db, **info) -> None:
    """What a running `serve` writes into its lease at each heartbeat (engine/service.py _heartbeat_loop)."""
    with db.write() as s:
        lease = s.exec(select(EngineLease)).one()
        lease.info = {**lease.info, **info}
        s.add(lease)


async def test_refused_webhooks_show_on_the_dashboard_and_go_when_they_stop(make_app, fixture_db) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert "refused" not in screen_text(app)
        engine_reports(fixture_db, webhooks_rejected_recent={"bad_signature": 3, "unknown_site": 1})
        await wait_for(pilot, lambda: "4 webhooks refused" in screen_text(app))
        side = " ".join(line.split("││")[-1].strip("│ ") for line in screen_text(app).splitlines()[2:12])
        assert "4 webhooks refused (15 min): bad_signature 3, unknown_site 1" in " ".join(side.split())
        engine_reports(fixture_db, webhooks_rejected_recent={})  # the window moved past them
        await wait_for(pilot, lambda: "refused" not in screen_text(app))


async def test_refused_webhooks_of_a_stopped_engine_are_not_shown_as_present(make_app, fixture_db) -> None:
    engine_reports(fixture_db, webhooks_rejected_recent={"bad_signature": 2})
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        assert "2 webhooks refused (15 min): bad_signature 2" in screen_text(app)
    with fixture_db.write() as s:
        s.delete(s.exec(select(EngineLease)).one())  # the engine stopped: its lease is gone
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        assert "refused" not in screen_text(app)


def side_panel(app) -> str:
    """The Conflicts · Health panel's text (right of the queue panel), its wrapped lines joined."""
    side = " ".join(line.split("││")[-1].strip("│ ") for line in screen_text(app).splitlines()[2:12])
    return " ".join(side.split())


async def test_echoes_of_our_own_writes_show_on_the_dashboard_beside_refused_webhooks(make_app, fixture_db) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert "echoes" not in screen_text(app)  # the engine has not reported a count yet
        engine_reports(fixture_db, echoes_skipped=42)
        await wait_for(pilot, lambda: "echoes of our own writes skipped: 42" in side_panel(app))
        engine_reports(fixture_db, echoes_skipped=1234, webhooks_rejected_recent={"bad_signature": 2})
        await wait_for(pilot, lambda: "echoes of our own writes skipped: 1,234" in side_panel(app))
        assert "2 webhooks refused (15 min): bad_signature 2" in side_panel(app)
        assert "2 open conflicts" in side_panel(app)  # the lines below the conflict count, not in its place


async def test_echo_count_of_a_stopped_engine_is_not_shown(make_app, fixture_db) -> None:
    engine_reports(fixture_db, echoes_skipped=9)
    with fixture_db.write() as s:
        s.delete(s.exec(select(EngineLease)).one())  # the engine stopped: its count is no longer current
    app = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_loaded(pilot)
        assert "echoes" not in screen_text(app)

"""The health screen attached to a running engine: ages, a local run replaced by the engine's next result."""

from __future__ import annotations

import asyncio

from erpsync_tui.config import AppConfig
from erpsync_tui.sim import SimCluster
from erpsync_tui.tui.app import ConsoleApp

from .test_engine_flows import cluster as cluster  # the fixture
from .test_engine_flows import engine_config, start_engine
from .testing import screen_text, wait_for, wait_loaded


def reachable(app: ConsoleApp, site: str) -> str | None:
    view = app.screen.results.get(f"site.reachable|{site}")
    return None if view is None else view.result.status


async def test_attached_health_screen_recovers_after_the_site_returns(cluster: SimCluster, db, monkeypatch) -> None:
    for name, site in cluster.sites.items():  # what an attached console's own run (`r`) logs in with
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_KEY", site.api_key)
        monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_SECRET", site.api_secret)
    base = engine_config(cluster).model_dump()
    base["scheduler"]["health_interval_seconds"] = 1.5
    config = AppConfig.model_validate(base)
    serve = await asyncio.to_thread(start_engine, cluster, db, config)  # the `serve` this console attaches to
    try:
        app = ConsoleApp(db, config, mode="attached", actor="ops", host="test-host", prewarm=False)
        async with app.run_test(size=(120, 30)) as pilot:
            await wait_loaded(pilot)
            await pilot.press("h")
            await wait_for(pilot, lambda: reachable(app, "cloud") == "ok", limit=40)
            assert " ago" in screen_text(app)  # every stored result shows its age
            cluster["cloud"].set_faults(drop=True)  # the cloud site goes away
            await pilot.press("r")
            await wait_for(pilot, lambda: app.screen.local_results is not None, limit=40)
            assert "local run" in app.screen.query_one("#health-table").border_subtitle
            assert reachable(app, "cloud") == "fail"
            cluster["cloud"].clear_faults()  # ... and comes back: the engine's next stored check replaces the run
            await wait_for(pilot, lambda: app.screen.local_results is None and reachable(app, "cloud") == "ok",
                           limit=40)
            assert "local run" not in screen_text(app)
    finally:
        await asyncio.to_thread(serve.stop)

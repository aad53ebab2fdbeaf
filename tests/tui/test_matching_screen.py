"""The Matching screen: the `match` dry run on screen, at 80x24, keys only; ERP text shown literally."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from erpsync_tui.sim import SimCluster
from erpsync_tui.tui.app import ConsoleApp

from .fixture import HOSTILE_MARKUP
from .test_engine_flows import engine_config
from .testing import screen_text, wait_for


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[SimCluster]:
    with SimCluster(["cloud", "local"], seed=1) as sim:
        for name, site in sim.sites.items():
            monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_KEY", site.api_key)
            monkeypatch.setenv(f"ERPSYNC_{name.upper()}_API_SECRET", site.api_secret)
        yield sim


async def test_matching_screen_shows_the_dry_run_and_writes_nothing(cluster: SimCluster, db) -> None:
    # ERP text: a customer name made of markup is a key like any other (names on screen go through safe_text)
    cluster["cloud"].insert("Customer", {"customer_name": HOSTILE_MARKUP}, fire_webhooks=False)
    for _ in range(2):
        cluster["local"].insert("Customer", {"customer_name": HOSTILE_MARKUP}, fire_webhooks=False)
    cluster["cloud"].insert("Customer", {"customer_name": "Same Co", "territory": "France"}, fire_webhooks=False)
    cluster["local"].insert("Customer", {"customer_name": "Same Co", "territory": "Japan"}, fire_webhooks=False)
    before = {site: cluster[site].count("Customer") for site in ("cloud", "local")}
    app = ConsoleApp(db, engine_config(cluster, doctypes=["Customer"]), mode="attached", actor="ops", host="h")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("colon")
        await pilot.press(*"matching", "enter")
        await wait_for(pilot, lambda: getattr(app.screen, "runs", 0) >= 1, limit=20)
        text = screen_text(app)
        assert "AMBIGUOUS" in text and "differs" in text, text
        assert "1 pairs found" in text
        await pilot.press("r")
        await wait_for(pilot, lambda: app.screen.runs >= 2, limit=20)
        await wait_for(pilot, lambda: "DUPLICATE" in screen_text(app) and "CUST-00002, CUST-00001" not in
                       screen_text(app))
    assert {site: cluster[site].count("Customer") for site in ("cloud", "local")} == before

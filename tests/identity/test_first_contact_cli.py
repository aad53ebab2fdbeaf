"""Issue 13, SAME-1: `manual` never writes a document both sites already held before an operator resolves."""

from __future__ import annotations

import json

from erpsync_tui.sim import SimCluster

from .conftest import Cli, content

SAME = {"item_code": "SAME-1", "item_group": "Products", "stock_uom": "Nos"}


def test_manual_first_contact_writes_nothing_until_resolve_then_take_cloud_is_cloud_on_both(
        run: Cli, cluster: SimCluster) -> None:
    cluster["cloud"].insert("Item", {**SAME, "item_name": "Cloud name", "standard_rate": 10}, fire_webhooks=False)
    cluster["local"].insert("Item", {**SAME, "item_name": "Local name", "standard_rate": 20}, fire_webhooks=False)
    before = {site: content(cluster[site].get("Item", "SAME-1")) for site in ("cloud", "local")}
    for _ in range(2):  # a second pass must not merge against a pretend base either
        result = run("sync", "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        assert summary["writes"] == 0, summary
        assert "merged" not in summary["outcomes"], summary
        for site in ("cloud", "local"):
            assert content(cluster[site].get("Item", "SAME-1")) == before[site], site
    conflicts = json.loads(run("conflicts", "--json").output)
    assert len(conflicts) == 1
    resolved = run("resolve", str(conflicts[0]["id"]), "--take", "cloud", "--json")
    assert resolved.exit_code == 0, resolved.output
    for site in ("cloud", "local"):
        assert content(cluster[site].get("Item", "SAME-1")) == before["cloud"], site
    assert json.loads(run("sync", "--json").output)["writes"] == 0
    assert cluster["cloud"].count("Item") == cluster["local"].count("Item") == 1

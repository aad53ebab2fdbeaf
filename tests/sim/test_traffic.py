"""The traffic generator: edits on both sites, real conflicts on shared names, hostile strings, webhooks."""

from __future__ import annotations

import json
import time

from sim_helpers import WebhookReceiver

from erpsync_tui.sim import SimCluster
from erpsync_tui.sim.traffic import HOSTILE_STRINGS, TrafficGenerator


def test_traffic_makes_conflicts_and_hostile_values(cluster: SimCluster, receiver: WebhookReceiver) -> None:
    for site in cluster:
        site.seed(20)
    cluster["local"].add_webhook(receiver.url, "s")
    cluster.start_traffic(rate_per_s=400, conflict_share=0.5, hostile_share=0.5)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and cluster.traffic_stats.get("ops", 0) < 200:
        time.sleep(0.05)
    cluster.stop_traffic()
    stats = cluster.traffic_stats
    assert stats["ops"] >= 200 and stats["conflicts"] > 20 and stats["updates"] > 50 and stats["inserts"] > 5
    assert stats["hostile"] > 10 and stats.get("errors", 0) == 0
    traffic = cluster.traffic
    assert traffic is not None
    doctype, name = traffic.conflicts[-1]
    edits = [e for e in traffic.log if e.get("conflict") and e["name"] == name and e["doctype"] == doctype]
    assert {e["site"] for e in edits} == {"cloud", "local"}
    for site in cluster:  # the edited document exists under that name on both sides, edited by another user
        doc = site.get(doctype, name)
        assert doc is not None and doc["modified_by"] == f"traffic@{site.name}.example"
    values = [v for site in cluster for d in site.all("Customer") for v in d.values() if isinstance(v, str)]
    assert any(h in v for v in values for h in HOSTILE_STRINGS if "\x1b" in h)
    assert any("[bold red]x[/]" in v for v in values)
    assert any(ch in v for v in values for ch in ("日本語", "Ελληνικά", "العربية"))
    assert receiver.wait_for(1) and json.loads(receiver.requests[0][1])["event"] in ("on_update", "after_insert")


def test_traffic_rate_is_respected(cluster: SimCluster) -> None:
    generator = TrafficGenerator(list(cluster.sites.values()), 20, seed=3)
    generator.start()
    time.sleep(0.5)
    generator.stop()
    assert 5 <= generator.stats["ops"] <= 15


def test_traffic_makes_the_document_lifecycle(cluster: SimCluster) -> None:
    for site in cluster:
        site.seed(10)
    generator = TrafficGenerator(list(cluster.sites.values()), 1000, lifecycle_share=0.6, seed=5)
    for _ in range(1500):
        generator.step()
    stats = generator.stats
    for op in ("order", "submit", "cancel", "amend", "rename", "lost_delete"):
        assert stats[op] > 0, stats
    assert stats.get("errors", 0) == 0
    for site in cluster:
        orders = site.all("Sales Order")
        assert {d["docstatus"] for d in orders} == {0, 1, 2}
        amended = [d for d in orders if d.get("amended_from")]
        assert any(d["name"] == f"{d['amended_from']}-1" for d in amended)  # <original>-1, then -2, …
        assert {d["status"] for d in orders} >= {"Draft", "To Deliver and Bill", "Cancelled"}
        assert site.all("Deleted Document") and site.all("Comment")

"""The Metrics registry: private per instance, engine-facing helpers, text exposition."""

from __future__ import annotations

import pytest

from erpsync_tui.metrics import Metrics


def test_instances_have_their_own_registries() -> None:
    first, second = Metrics(), Metrics()
    first.accepted()
    assert b"erpsync_webhooks_accepted_total 1.0" in first.render()
    assert b"erpsync_webhooks_accepted_total 0.0" in second.render()


def test_engine_helpers() -> None:
    metrics = Metrics()
    metrics.observe_sync("updated", 0.2)
    metrics.observe_sync("conflict", 1.5)
    metrics.failed("ERP001")
    metrics.set_circuit("cloud", "half_open")
    metrics.set_circuit("local", "closed")
    metrics.set_queue_depth({"pending": 3, "dead": 1})
    text = metrics.render().decode()
    assert 'erpsync_sync_processed_total{outcome="updated"} 1.0' in text
    assert "erpsync_sync_latency_seconds_count 2.0" in text
    assert 'erpsync_sync_failed_total{code="ERP001"} 1.0' in text
    assert 'erpsync_circuit_state{site="cloud"} 1.0' in text
    assert 'erpsync_circuit_state{site="local"} 0.0' in text
    assert 'erpsync_queue_depth{status="pending"} 3.0' in text


def test_unknown_circuit_state_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown circuit state"):
        Metrics().set_circuit("cloud", "ajar")

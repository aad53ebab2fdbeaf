"""Prometheus metrics shared by the webhook receiver and the engine, served at the receiver's `/metrics`.

Each `Metrics` owns its own `CollectorRegistry` (never the process-global default), so tests and several
engines in one process can each create one without "Duplicated timeseries" errors.

It lives beside config.py, below both engine/ and webhooks/, so the receiver can count without importing the engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# The numbers a dashboard plots for the connector circuit breaker (connectors/circuit.py's states).
# auth_refused: open because the site answered 401 to everything (a revoked key), an outage a person must fix.
CIRCUIT_STATES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2, "auth_refused": 3}

# One sync reads and writes a document over the network: milliseconds to tens of seconds.
SYNC_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge("erpsync_queue_depth", "Queue items by status", ["status"], registry=r)
        self.webhooks_accepted = Counter(
            "erpsync_webhooks_accepted_total", "Webhooks verified and stored in the queue", registry=r
        )
        self.webhooks_rejected = Counter(
            "erpsync_webhooks_rejected_total", "Webhooks refused, by reason", ["reason"], registry=r
        )
        self.sync_processed = Counter(
            "erpsync_sync_processed_total", "Queue items processed, by outcome", ["outcome"], registry=r
        )
        self.sync_failed = Counter("erpsync_sync_failed_total", "Sync failures, by error code", ["code"], registry=r)
        self.sync_latency = Histogram(
            "erpsync_sync_latency_seconds", "Time to process one queue item", buckets=SYNC_LATENCY_BUCKETS, registry=r
        )
        self.echoes_skipped = Gauge(
            "erpsync_webhook_echoes_skipped", "Webhooks that were the echo of our own write (since start)",
            registry=r
        )
        self.circuit_state = Gauge(
            "erpsync_circuit_state", "Circuit breaker per site: 0 closed, 1 half_open, 2 open, 3 auth_refused (401s)",
            ["site"], registry=r
        )

    # ------------------------------------------------------------------------------ receiver

    def accepted(self, count: int = 1) -> None:
        self.webhooks_accepted.inc(count)

    def rejected(self, reason: str) -> None:
        self.webhooks_rejected.labels(reason=reason).inc()

    def set_echoes(self, total: int) -> None:
        """Webhooks that were the echo of our own write, settled without a request (not log rows: counted)."""
        self.echoes_skipped.set(total)

    def rejected_totals(self) -> dict[str, int]:
        """Webhooks refused so far, by reason."""
        totals: dict[str, int] = {}
        for metric in self.webhooks_rejected.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels["reason"]] = int(sample.value)
        return totals

    def set_queue_depth(self, by_status: Mapping[str, int]) -> None:
        for status, count in by_status.items():
            self.queue_depth.labels(status=status).set(count)

    # ------------------------------------------------------------------------------ engine

    def observe_sync(self, outcome: str, seconds: float) -> None:
        self.sync_processed.labels(outcome=outcome).inc()
        self.sync_latency.observe(max(0.0, seconds))

    def failed(self, code: str) -> None:
        self.sync_failed.labels(code=code).inc()

    def set_circuit(self, site: str, state: str) -> None:
        """`state` is "closed", "half_open" (or "half-open") or "open"; anything else is a programming error."""
        key = state.replace("-", "_").lower()
        if key not in CIRCUIT_STATES:
            raise ValueError(f"unknown circuit state {state!r}; expected one of {', '.join(CIRCUIT_STATES)}")
        self.circuit_state.labels(site=site).set(CIRCUIT_STATES[key])

    # ------------------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        """The Prometheus text exposition format of every metric in this registry."""
        return generate_latest(self.registry)

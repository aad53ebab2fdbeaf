"""One reading of health for the header, the dashboard and the health screen alike.

Stored check results are snapshots: each is shown with its age. The circuit state comes from the engine's
heartbeat (the same source as the header), not from the last stored check, so the three never disagree.
A result older than a few health intervals is *stale*: shown as such and left out of the triage, which
blames only what is happening now. With no engine running, nothing is live: every result is stale.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from erpsync_tui.engine import health
from erpsync_tui.store.control import EngineStatus
from erpsync_tui.store.models import HealthResult

STALE_INTERVALS = 3  # a result is stale after this many health intervals without a newer one


@dataclass(frozen=True, slots=True)
class CheckView:
    result: health.CheckResult
    age: timedelta | None  # None: live (from the engine's heartbeat) or a local run just made
    stale: bool = False
    source: str = "stored"  # stored | live | local

    @property
    def key(self) -> str:
        return f"{self.result.check}|{self.result.target}"


def as_check(row: HealthResult) -> health.CheckResult:
    return health.CheckResult(row.check, row.target, row.status, row.value, row.detail, row.error_code, row.quick_fix,
                              health.CHECK_STEPS.get(row.check, "sync_running"))


def health_views(
    rows: list[HealthResult],
    status: EngineStatus | None,
    *,
    now: datetime,
    interval_seconds: float,
    local: list[health.CheckResult] | None = None,
) -> list[CheckView]:
    """Stored results with their ages (or a local run's), circuits from the heartbeat; failing first."""
    stale_after = timedelta(seconds=interval_seconds * STALE_INTERVALS)
    engine_live = status is not None and status.mode != "stopped"
    if local is not None:
        views = [CheckView(result, None, source="local") for result in local]
    else:
        views = [CheckView(as_check(row), _age(now, row.checked_at),
                           stale=not engine_live or _age(now, row.checked_at) > stale_after)
                 for row in rows]
    if engine_live and status is not None and status.circuits:
        live = {site: health.check_circuit(site, state, "from the engine's heartbeat (as in the header)")
                for site, state in status.circuits.items()}
        views = [v for v in views if not (v.result.check == "site.circuit" and v.result.target in live)]
        views += [CheckView(result, None, source="live") for result in live.values()]
    rank = {"fail": 0, "warn": 1, "ok": 2}
    return sorted(views, key=lambda v: (v.stale, rank.get(v.result.status, 3),
                                        health.TRIAGE_STEPS.index(v.result.step)
                                        if v.result.step in health.TRIAGE_STEPS else 9, v.result.check,
                                        v.result.target))


def current(views: list[CheckView]) -> list[health.CheckResult]:
    """What the triage may blame: results that are not stale."""
    return [v.result for v in views if not v.stale]


def newest_stored(rows: list[HealthResult]) -> datetime | None:
    return max((r.checked_at for r in rows if r.checked_at is not None), default=None)


def _age(now: datetime, then: datetime | None) -> timedelta:
    if then is None:
        return timedelta.max
    if then.tzinfo is None and now.tzinfo is not None:
        then = then.replace(tzinfo=now.tzinfo)
    return max(now - then, timedelta(0))

"""A simulated site's clock: naive timestamps in its zone, as Frappe stores them."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


class SiteClock:
    """Naive timestamps in the site's zone, strictly increasing across the whole site (so per document too)."""

    def __init__(self, timezone: str = "UTC", offset_s: float = 0.0) -> None:
        self.zone = ZoneInfo(timezone)
        self.offset = timedelta(seconds=offset_s)
        self._last: datetime | None = None

    def now(self) -> str:
        current = datetime.now(self.zone).replace(tzinfo=None) + self.offset
        if self._last is not None and current <= self._last:
            current = self._last + timedelta(microseconds=1)  # also covers DST fall-back and coarse clocks
        self._last = current
        return current.isoformat(" ", "microseconds")

    def observe(self, timestamp: str) -> None:
        """Never hand out a timestamp at or below one already stored (restart from SQLite)."""
        try:
            seen = datetime.fromisoformat(timestamp)
        except (TypeError, ValueError):
            return
        if self._last is None or seen > self._last:
            self._last = seen

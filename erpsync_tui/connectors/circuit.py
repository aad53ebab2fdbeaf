"""A per-site circuit breaker.

Written here rather than taken from a library: pybreaker is synchronous (its async support is Tornado-only),
aiobreaker's last release is from 2021, circuitbreaker is a per-function decorator. purgatory (asyncio, last
release 2024-11) is the closest fit, but it is not installed here and brings its own store/unit-of-work model
for ~80 lines of logic: a counter, three states and an injectable clock, with the state visible to the console.
There are no awaits inside, so asyncio's single thread makes every method atomic.

    closed ──N consecutive failures──▶ open ──reset_timeout elapsed──▶ half_open
       ▲                                 ▲                                 │ one trial request
       └──────────── trial succeeds ─────┼──────── trial fails ────────────┘
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

State = Literal["closed", "open", "half_open"]

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_RESET_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class CircuitSnapshot:
    state: State
    consecutive_failures: int
    opened_at: float | None
    retry_at: float | None
    times_opened: int
    rejected: int
    successes: int
    failures: int


class CircuitBreaker:
    """Counts consecutive failures (the caller decides what a failure is: connection, timeout, 5xx — never a 4xx,
    which proves the site is up). Times come from `clock` (time.monotonic unless a test injects one)."""

    def __init__(
        self,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        reset_timeout: float = DEFAULT_RESET_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_timeout < 0:
            raise ValueError("failure_threshold must be >= 1 and reset_timeout >= 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._open = False
        self._trial_in_flight = False
        self.consecutive_failures = 0
        self.opened_at: float | None = None
        self.times_opened = 0
        self.rejected = 0
        self.successes = 0
        self.failures = 0
        self.reason = "outage"  # why the last failure counted: "outage" (down) or "auth" (401 to everything)

    @property
    def retry_at(self) -> float | None:
        return None if self.opened_at is None else self.opened_at + self.reset_timeout

    @property
    def state(self) -> State:
        if not self._open:
            return "closed"
        assert self.retry_at is not None
        return "half_open" if self._clock() >= self.retry_at else "open"

    def allow_request(self) -> bool:
        """May a request go out now? In half_open only one trial at a time is let through."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return True
        self.rejected += 1
        return False

    def record_success(self) -> None:
        self.successes += 1
        self.consecutive_failures = 0
        self._open = False
        self._trial_in_flight = False
        self.opened_at = None

    def record_failure(self, reason: str = "outage") -> None:
        self.reason = reason
        self.failures += 1
        self.consecutive_failures += 1
        was_trial = self._trial_in_flight
        self._trial_in_flight = False
        if was_trial or (not self._open and self.consecutive_failures >= self.failure_threshold):
            self._trip()

    def release(self) -> None:
        """The allowed request ended with no verdict (cancelled, or failed before reaching the site)."""
        self._trial_in_flight = False

    def reset(self) -> None:
        self.record_success()

    def snapshot(self) -> CircuitSnapshot:
        return CircuitSnapshot(
            state=self.state,
            consecutive_failures=self.consecutive_failures,
            opened_at=self.opened_at,
            retry_at=self.retry_at,
            times_opened=self.times_opened,
            rejected=self.rejected,
            successes=self.successes,
            failures=self.failures,
        )

    def _trip(self) -> None:
        self._open = True
        self.opened_at = self._clock()
        self.times_opened += 1

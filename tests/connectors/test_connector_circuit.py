"""The circuit breaker's state machine, driven by a fake clock."""

from __future__ import annotations

import pytest

from erpsync_tui.connectors import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow_request()
        breaker.record_failure()


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    fail(breaker, 2)
    assert breaker.state == "closed"
    fail(breaker, 1)
    assert breaker.state == "open"
    assert breaker.opened_at == 1000.0
    assert breaker.retry_at == 1010.0
    assert breaker.times_opened == 1
    assert not breaker.allow_request()
    assert breaker.rejected == 1


def test_success_resets_the_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker(3, 10.0, clock=clock)
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state == "closed"
    assert breaker.consecutive_failures == 2


def test_half_open_lets_one_trial_through_then_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    fail(breaker, 2)
    clock.now += 9.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert breaker.allow_request()  # the trial
    assert not breaker.allow_request()  # everyone else waits for its verdict
    breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.opened_at is None and breaker.retry_at is None
    assert breaker.allow_request()


def test_failed_trial_reopens_for_another_cool_down(clock: FakeClock) -> None:
    breaker = CircuitBreaker(2, 10.0, clock=clock)
    fail(breaker, 2)
    clock.now += 10
    assert breaker.allow_request()
    breaker.record_failure()
    assert breaker.state == "open"
    assert breaker.retry_at == clock.now + 10
    assert breaker.times_opened == 2


def test_released_trial_frees_the_slot(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    fail(breaker, 1)
    clock.now += 5
    assert breaker.allow_request()
    breaker.release()  # e.g. the trial was cancelled
    assert breaker.state == "half_open"
    assert breaker.allow_request()


def test_snapshot_and_validation(clock: FakeClock) -> None:
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    fail(breaker, 1)
    snap = breaker.snapshot()
    assert (snap.state, snap.failures, snap.successes, snap.times_opened) == ("open", 1, 0, 1)
    with pytest.raises(ValueError):
        CircuitBreaker(0)

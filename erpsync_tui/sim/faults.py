"""Runtime-switchable faults and the per-key request-rate limiter."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Faults:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0  # share of API requests answered 500
    rate_limit_always: bool = False  # every API request → 429
    retry_after: int = 1  # seconds, sent in Retry-After on 429
    per_key_rps: float | None = None  # requests/second allowed per API key (or client IP for Guest)
    hang: bool = False  # requests never answer until cleared (or HANG_MAX_S)
    drop: bool = False  # close the connection without any response
    # Run the request (and commit it), then close the connection without answering: a lost answer. Applies to
    # requests whose path contains this text ("" = none), e.g. "insert_many" or "/api/resource/Customer".
    drop_response: str = ""
    revoked: bool = False  # valid credentials answer 401
    clock_offset_s: float = 0.0  # this site's clock runs ahead (+) or behind (-): ping's Date header says so

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def replace(self, **changes: Any) -> Faults:
        unknown = set(changes) - self.field_names()
        if unknown:
            raise ValueError(f"unknown fault(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class KeyRateLimiter:
    """Token bucket per key: `rate` tokens/s, burst of max(1, rate). Thread-safe, O(1) per request."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def take(self, key: str, rate: float) -> tuple[bool, float, int]:
        """→ (allowed, seconds until a token is available, tokens remaining)."""
        burst = max(1.0, rate)
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - stamp) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0, int(tokens - 1.0)
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / rate if rate > 0 else math.inf, 0

"""A circuit breaker per liquidity provider, and the clock it (and the router) reads.

Why: a venue that keeps failing costs every order a full deadline before we give up on it, and may
fail a placement after we chose it. After `failure_threshold` consecutive failures the breaker
*opens* and the router stops asking that venue at all; after `cool_down_s` it *half-opens* and lets
exactly one probe through (the next quote request); a success closes it, a failure opens it again for
another cool-down. Failures come from two places: the router's own quote fan-out (error or deadline)
and the order saga's placements (`record_success` / `record_failure`), so a venue that quotes well but
rejects orders is also taken out of rotation.

State lives in process memory: each worker learns a venue's health on its own. That is deliberate —
a breaker is a latency optimisation, not a source of truth, and sharing it would need a store that can
itself fail.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Protocol


class Clock(Protocol):
    """Time as the router sees it: injectable so tests can move it without sleeping."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (latencies, cool-downs)."""
        ...

    def now(self) -> datetime:
        """Wall-clock time for timestamps in records (timezone-aware UTC)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class BreakerState(StrEnum):
    CLOSED = "closed"  # healthy: every request goes through
    OPEN = "open"  # failing: requests are skipped until the cool-down ends
    HALF_OPEN = "half_open"  # cool-down over: one probe is let through to test the venue


@dataclass
class CircuitBreaker:
    """One provider's breaker. Not thread-safe; asyncio code on one loop needs no lock."""

    failure_threshold: int = 3
    cool_down_s: float = 30.0
    window_s: float = 300.0
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    opened_at: float | None = None
    probe_started_at: float | None = None
    # Failure times inside `window_s`, kept apart from the consecutive count: a success resets the
    # breaker but not the memory that the venue was flaky a minute ago (the router's reliability term).
    failure_times: deque[float] = field(default_factory=deque)

    def recent_failures(self, now: float) -> int:
        while self.failure_times and now - self.failure_times[0] > self.window_s:
            self.failure_times.popleft()
        return len(self.failure_times)

    def current_state(self, now: float) -> BreakerState:
        """The state at `now`: an open breaker whose cool-down has passed reads as half-open."""
        if self.state is BreakerState.OPEN and self.opened_at is not None:
            if now - self.opened_at >= self.cool_down_s:
                return BreakerState.HALF_OPEN
        return self.state

    def allow(self, now: float) -> bool:
        """Whether a request may go to the venue now. In half-open, claims the single probe slot.

        A probe whose outcome is never reported (a cancelled task) frees its slot after another
        cool-down, so a lost probe cannot keep the venue out of rotation forever.
        """
        state = self.current_state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        probe_busy = self.probe_started_at is not None and now - self.probe_started_at < self.cool_down_s
        if probe_busy:
            return False
        self.state = BreakerState.HALF_OPEN
        self.probe_started_at = now
        return True

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self.opened_at = None
        self.probe_started_at = None

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        self.failure_times.append(now)
        failed_probe = self.state is BreakerState.HALF_OPEN
        if failed_probe or self.consecutive_failures >= self.failure_threshold:
            self.state = BreakerState.OPEN
            self.opened_at = now
            self.probe_started_at = None


@dataclass
class CircuitBreakers:
    """The breakers of every provider, created on first use with the same parameters."""

    clock: Clock = field(default_factory=SystemClock)
    failure_threshold: int = 3
    cool_down_s: float = 30.0
    window_s: float = 300.0
    # Told the provider's name when its breaker opens (not while it stays open): the venue-down ops alert.
    on_open: Callable[[str], None] | None = None
    _by_provider: dict[str, CircuitBreaker] = field(default_factory=dict)

    def get(self, provider: str) -> CircuitBreaker:
        breaker = self._by_provider.get(provider)
        if breaker is None:
            breaker = CircuitBreaker(
                failure_threshold=self.failure_threshold, cool_down_s=self.cool_down_s, window_s=self.window_s
            )
            self._by_provider[provider] = breaker
        return breaker

    def state(self, provider: str) -> BreakerState:
        return self.get(provider).current_state(self.clock.monotonic())

    def allow(self, provider: str) -> bool:
        return self.get(provider).allow(self.clock.monotonic())

    def record_success(self, provider: str) -> None:
        self.get(provider).record_success()

    def record_failure(self, provider: str) -> None:
        breaker = self.get(provider)
        was_open = breaker.state is BreakerState.OPEN
        breaker.record_failure(self.clock.monotonic())
        if not was_open and breaker.state is BreakerState.OPEN and self.on_open is not None:
            self.on_open(provider)

    def consecutive_failures(self, provider: str) -> int:
        return self.get(provider).consecutive_failures

    def recent_failures(self, provider: str) -> int:
        return self.get(provider).recent_failures(self.clock.monotonic())

"""Request rate limits (seed §7): per IP when unauthenticated, per user when authenticated, and a
tighter one for withdrawals. Over the limit → 429 problem with `Retry-After` (seconds).

Exact sliding windows (a deque of hit times per key), in process memory. That is right for one API
process; several processes behind a load balancer would each allow the full rate, so they would need a
shared store (a PostgreSQL table updated with one `INSERT … ON CONFLICT` per hit, or Redis). The edge
(Cloudflare/WAF in the seed's §7) remains the first line against floods.

The middleware picks the user bucket from a validly *signed*, unexpired access token without touching
the database; revocation is checked later by the route's own dependency. A forged token lands in the IP
bucket, so it can't be used to escape the per-IP limit.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth_deps import CurrentUser
from api.errors import ProblemError, problem_response
from services.auth import TokenCodec


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests allowed per window. Pass smaller ones to `create_app` in tests."""

    anonymous_per_minute: int = 100
    user_per_minute: int = 1000
    withdrawals_per_hour: int = 10
    # Probes from the load balancer and orchestrator must never be throttled.
    exempt_paths: tuple[str, ...] = ("/healthz", "/readyz")


class SlidingWindowLimiter:
    """Allows at most `limit` hits per key in any window of `window` seconds."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._hits: dict[str, deque[float]] = {}
        self._clock = clock
        self._next_sweep = 0.0

    def hit(self, key: str, limit: int, window: float) -> int | None:
        """Count a hit; None if allowed, else the whole seconds until one is allowed again.

        No `await` inside, so it is atomic on the event loop."""
        now = self._clock()
        self._sweep(now, window)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) >= limit:
            return max(1, math.ceil(hits[0] + window - now))
        hits.append(now)
        return None

    def _sweep(self, now: float, window: float) -> None:
        """Forget idle keys now and then, so memory follows active clients, not every client ever seen."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        for key in [k for k, h in self._hits.items() if not h or h[-1] <= now - max(window, 3600.0)]:
            del self._hits[key]


class RateLimitMiddleware:
    """ASGI middleware applying the per-IP and per-user limits to every HTTP request."""

    def __init__(
        self, app: ASGIApp, *, limits: RateLimits, limiter: SlidingWindowLimiter, tokens: TokenCodec
    ) -> None:
        self.app = app
        self.limits = limits
        self.limiter = limiter
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.limits.exempt_paths:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        user_id = self._user_id(request)
        if user_id is not None:
            wait = self.limiter.hit(f"user:{user_id}", self.limits.user_per_minute, 60.0)
        else:
            ip = request.client.host if request.client else "unknown"
            wait = self.limiter.hit(f"ip:{ip}", self.limits.anonymous_per_minute, 60.0)
        if wait is None:
            await self.app(scope, receive, send)
            return
        response = problem_response(
            request,
            429,
            code="rate_limited",
            detail="too many requests; slow down",
            headers={"Retry-After": str(wait)},
        )
        await response(scope, receive, send)

    def _user_id(self, request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        return self.tokens.peek_subject(token.strip())


def _limiter(request: Request) -> tuple[SlidingWindowLimiter, RateLimits]:
    state: Any = request.app.state
    return state.rate_limiter, state.rate_limits


async def withdrawal_rate_limit(request: Request, user: CurrentUser) -> None:
    """10 withdrawal requests per hour per user (seed §7), on top of the general limits."""
    limiter, limits = _limiter(request)
    wait = limiter.hit(f"withdrawal:{user.id}", limits.withdrawals_per_hour, 3600.0)
    if wait is not None:
        raise ProblemError(
            429,
            "rate_limited",
            "too many withdrawal requests; try again later",
            headers={"Retry-After": str(wait)},
        )


# Attach to the withdrawal route: `@router.post("/withdrawals", dependencies=[WithdrawalRateLimit])`.
WithdrawalRateLimit = Depends(withdrawal_rate_limit)
WithdrawalRateLimited = Annotated[None, WithdrawalRateLimit]

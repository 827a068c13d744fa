"""Request rate limits (docs/architecture.md §7): per IP when unauthenticated, per user when authenticated,
and a tighter one for withdrawals. Over the limit → 429 problem with `Retry-After` (seconds).

The counts live in PostgreSQL (`services.rate_limit_store`), so every API process behind the load
balancer draws on the same window per key: N processes allow the limit once, not N times. One round trip
per request (two on a withdrawal). If the database cannot be reached the request is answered 503
`database_unavailable`, as every route needing the database would be. The edge (Cloudflare/WAF in the
seed's §7) remains the first line against floods.

The middleware picks the user bucket from a validly *signed*, unexpired access token without touching
the users table; revocation is checked later by the route's own dependency. A forged token lands in the
IP bucket, so it can't be used to escape the per-IP limit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.auth_deps import CurrentUser, remember_verified_claims
from api.errors import DATABASE_DOWN, RETRY_AFTER_S, UNTHROTTLED_PATHS, ProblemError, problem_response
from config import Settings
from services.auth import TokenCodec, TokenInvalid
from services.rate_limit_store import RateLimitStore

log = logging.getLogger("api.ratelimit")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests allowed per window. Pass smaller ones to `create_app` in tests."""

    anonymous_per_minute: int = 100
    user_per_minute: int = 1000
    withdrawals_per_hour: int = 10
    # Probes from the load balancer and orchestrator must never be throttled.
    exempt_paths: tuple[str, ...] = UNTHROTTLED_PATHS

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits:
        """The limits `RATE_LIMIT_*` configure (production: 100/min per IP, 1000/min per user, 10
        withdrawals/h)."""
        return cls(
            anonymous_per_minute=settings.rate_limit_anonymous_per_minute,
            user_per_minute=settings.rate_limit_user_per_minute,
            withdrawals_per_hour=settings.rate_limit_withdrawals_per_hour,
        )


async def sweep_expired_windows(store: RateLimitStore, every_s: float) -> None:
    """Run for the process's life: now and then delete the windows whose hits have all expired, so the
    table follows active clients, not every client ever seen. Each API process sweeps; a sweep that
    finds nothing costs one indexed query."""
    while True:
        await asyncio.sleep(every_s)
        try:
            while await store.sweep() > 0:
                pass
        except Exception as e:  # the database away for a while: sweep next time
            log.warning("rate-limit sweep failed: %s", type(e).__name__)


class RateLimitMiddleware:
    """ASGI middleware applying the per-IP and per-user limits to every HTTP request."""

    def __init__(self, app: ASGIApp, *, limits: RateLimits, tokens: TokenCodec) -> None:
        self.app = app
        self.limits = limits
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.limits.exempt_paths:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        store: RateLimitStore = request.app.state.rate_limit_store
        user_id = self._user_id(request)  # verifies the token once for the whole request
        try:
            if user_id is not None:
                wait = await store.hit(f"user:{user_id}", self.limits.user_per_minute, 60.0)
            else:
                ip = request.client.host if request.client else "unknown"
                wait = await store.hit(f"ip:{ip}", self.limits.anonymous_per_minute, 60.0)
        except DATABASE_DOWN as e:
            # Outside the routes, so the app's exception handlers never see it: answer as they would.
            log.warning("database unavailable for rate limits on %s: %s", scope["path"], type(e).__name__)
            unavailable = problem_response(
                request,
                503,
                code="database_unavailable",
                detail="the database is unavailable; try again shortly",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            await unavailable(scope, receive, send)
            return
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
        """The user of a validly signed, unexpired access token (revocation is the route's check); its
        claims are left on the request for the route's authentication."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            claims = self.tokens.decode(token, "access")
        except TokenInvalid:
            return None
        remember_verified_claims(request, token, claims)
        return str(claims["sub"])


async def withdrawal_rate_limit(request: Request, user: CurrentUser) -> None:
    """10 withdrawal requests per hour per user (docs/architecture.md §7), on top of the general limits."""
    state: Any = request.app.state
    store: RateLimitStore = state.rate_limit_store
    limits: RateLimits = state.rate_limits
    wait = await store.hit(f"withdrawal:{user.id}", limits.withdrawals_per_hour, 3600.0)
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

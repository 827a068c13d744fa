"""Rate limits: per IP unauthenticated, per user authenticated, 429 problem with Retry-After."""

from __future__ import annotations

from api.ratelimit import RateLimits, SlidingWindowLimiter
from tests.api.conftest import AppClient, assert_problem, bearer, login, random_ip, register


def test_sliding_window_counts_the_last_window_only() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(clock=lambda: now[0])
    assert [limiter.hit("k", 3, 60.0) for _ in range(3)] == [None, None, None]
    assert limiter.hit("k", 3, 60.0) == 60
    assert limiter.hit("other", 3, 60.0) is None
    now[0] += 59.5
    assert limiter.hit("k", 3, 60.0) == 1  # the oldest hit leaves the window in half a second
    now[0] += 0.6
    assert limiter.hit("k", 3, 60.0) is None


async def test_unauthenticated_requests_are_limited_per_ip(app_client: AppClient) -> None:
    limits = RateLimits(anonymous_per_minute=3, user_per_minute=1000)
    async with app_client(rate_limits=limits) as client:
        for _ in range(3):
            assert (await client.get("/api/v1/auth/me")).status_code == 401
        r = await client.get("/api/v1/auth/me")
        assert_problem(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert (await client.get("/healthz")).status_code == 200  # probes are never throttled


async def test_authenticated_requests_are_limited_per_user(app_client: AppClient) -> None:
    limits = RateLimits(anonymous_per_minute=4, user_per_minute=3)
    async with app_client(rate_limits=limits, ip=random_ip()) as client:
        email = await register(client)  # anonymous request 1
        tokens = await login(client, email)  # anonymous request 2
        for _ in range(3):
            assert (await client.get("/api/v1/auth/me", headers=bearer(tokens))).status_code == 200
        r = await client.get("/api/v1/auth/me", headers=bearer(tokens))
        assert_problem(r, 429, "rate_limited")
        assert "retry-after" in r.headers
        # The user's bucket is not the address's: anonymous requests from the same IP still pass …
        assert (await client.get("/api/v1/auth/me")).status_code == 401
        # … and a forged token does not get a bucket of its own: it counts against the IP.
        assert (await client.get("/api/v1/auth/me", headers=bearer("forged.token.here"))).status_code == 401
        assert (await client.get("/api/v1/auth/me", headers=bearer("forged.token.here"))).status_code == 429

"""Rate limits: per IP unauthenticated, per user authenticated, 429 problem with Retry-After; the windows
live in PostgreSQL, so every API process shares them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.ratelimit import RateLimits
from config import Settings
from services.rate_limit_store import RateLimitStore, rate_limit_engine
from tests.api.conftest import (
    AppClient,
    assert_problem,
    bearer,
    build_app,
    enable_2fa,
    login,
    random_ip,
    register,
)
from tests.api.test_guards import _app_with_guarded_routes


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[RateLimitStore]:
    s = RateLimitStore(rate_limit_engine(database_url, pool_size=4))
    try:
        yield s
    finally:
        await s.close()


def _key() -> str:
    return f"test:{uuid.uuid4()}"


async def test_the_window_counts_the_last_minute_in_whole_seconds(store: RateLimitStore) -> None:
    key, t = _key(), 1_000_000.25
    assert [await store.hit(key, 3, 60.0, now=t) for _ in range(3)] == [None, None, None]
    assert await store.hit(key, 3, 60.0, now=t) == 61  # 60 s and the rest of the hits' second
    assert await store.hit(_key(), 3, 60.0, now=t) is None  # another key has its own window
    assert await store.hit(key, 3, 60.0, now=t + 59.5) == 2
    assert await store.hit(key, 3, 60.0, now=t + 60.5) == 1  # never before a whole minute has passed
    assert await store.hit(key, 3, 60.0, now=t + 60.75) is None
    assert await store.hit(key, 3, 60.0, now=t + 60.8) is None
    assert await store.hit(key, 3, 60.0, now=t + 61) is None
    assert await store.hit(key, 3, 60.0, now=t + 61) == 61  # three hits in the last minute again


async def test_refused_hits_are_not_counted_and_old_buckets_leave_one_by_one(store: RateLimitStore) -> None:
    key, t = _key(), 2_000_000.0
    assert await store.hit(key, 2, 60.0, now=t) is None
    assert await store.hit(key, 2, 60.0, now=t + 30) is None
    for _ in range(5):  # refused while full; the refusals do not push the window out
        assert await store.hit(key, 2, 60.0, now=t + 40) == 21
    assert await store.hit(key, 2, 60.0, now=t + 61) is None  # the first hit has left, the second not
    assert await store.hit(key, 2, 60.0, now=t + 61) == 30
    # An hour window counts in minutes: a hit at the start of a minute waits out that minute as well.
    hour, minute = _key(), 60.0 * 33_334
    assert await store.hit(hour, 1, 3600.0, now=minute) is None
    assert await store.hit(hour, 1, 3600.0, now=minute + 10) == 3650


async def test_concurrent_hits_from_many_connections_never_exceed_the_limit(
    store: RateLimitStore, database_url: str
) -> None:
    other = RateLimitStore(rate_limit_engine(database_url, pool_size=4))  # as a second API process
    try:
        key = _key()
        answers = await asyncio.gather(
            *(s.hit(key, 25, 60.0) for _ in range(40) for s in (store, other)), return_exceptions=True
        )
    finally:
        await other.close()
    assert not [a for a in answers if isinstance(a, BaseException)]
    assert sum(a is None for a in answers) == 25
    assert all(isinstance(a, int) and 1 <= a <= 61 for a in answers if a is not None)


async def test_expired_windows_are_swept(store: RateLimitStore, engine: AsyncEngine) -> None:
    old, fresh = _key(), _key()
    await store.hit(old, 5, 60.0, now=1_000.0)  # long ago
    await store.hit(fresh, 5, 60.0)
    while await store.sweep(batch=1000) > 0:
        pass
    async with engine.connect() as conn:
        keys = set(
            (
                await conn.execute(
                    text("SELECT key FROM rate_limit_windows WHERE key IN (:a, :b)"), {"a": old, "b": fresh}
                )
            ).scalars()
        )
    assert keys == {fresh}


async def test_unauthenticated_requests_are_limited_per_ip(app_client: AppClient) -> None:
    limits = RateLimits(anonymous_per_minute=3, user_per_minute=1000)
    async with app_client(rate_limits=limits) as client:
        for _ in range(3):
            assert (await client.get("/api/v1/auth/me")).status_code == 401
        r = await client.get("/api/v1/auth/me")
        assert_problem(r, 429, "rate_limited")
        assert 1 <= int(r.headers["retry-after"]) <= 61
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


async def test_two_api_processes_share_the_per_user_limit(
    app_client: AppClient, api_settings: Settings
) -> None:
    """Two apps over one database stand for two API processes behind a load balancer."""
    limits = RateLimits(anonymous_per_minute=1000, user_per_minute=4)
    first, second = build_app(api_settings, rate_limits=limits), build_app(api_settings, rate_limits=limits)
    async with (
        app_client(app=first, ip=random_ip()) as a,
        app_client(app=second, ip=random_ip()) as b,
    ):
        tokens = await login(a, await register(a))
        answers = [(await c.get("/api/v1/auth/me", headers=bearer(tokens))).status_code for c in (a, b, a, b)]
        assert answers == [200, 200, 200, 200]
        for c in (a, b):  # the fifth request is refused whichever process it reaches
            assert_problem(await c.get("/api/v1/auth/me", headers=bearer(tokens)), 429, "rate_limited")


async def test_two_api_processes_share_the_withdrawal_limit(
    app_client: AppClient, api_settings: Settings, engine: AsyncEngine
) -> None:
    limits = RateLimits(anonymous_per_minute=1000, user_per_minute=1000, withdrawals_per_hour=2)
    withdraw = "/api/v1/test/withdraw"
    first = _app_with_guarded_routes(api_settings, limits)
    second = _app_with_guarded_routes(api_settings, limits)
    async with app_client(app=first) as a, app_client(app=second) as b:
        email = await register(a)
        tokens = await login(a, email)
        await enable_2fa(a, tokens)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE users SET email_verified = true WHERE email = :e"), {"e": email})
        # Counted before the second factor is checked, so no TOTP codes are spent on the count.
        assert_problem(await a.post(withdraw, headers=bearer(tokens)), 403, "totp_required")
        assert_problem(await b.post(withdraw, headers=bearer(tokens)), 403, "totp_required")
        for c in (a, b):
            r = await c.post(withdraw, headers=bearer(tokens))
            assert_problem(r, 429, "rate_limited")
            assert 3000 < int(r.headers["retry-after"]) <= 3660

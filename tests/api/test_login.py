"""Login: tokens, identical failures for unknown emails, lock-out with back-off, new-device alerts."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth import LockoutPolicy
from services.auth.context import account_key
from tests.api.conftest import (
    PASSWORD,
    TEST_POLICY,
    AppClient,
    MailSink,
    assert_problem,
    audit_actions,
    bearer,
    login,
    random_ip,
    register,
    unique_email,
)


async def _attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_login_returns_a_token_pair_that_works(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    email = await register(client, unique_email("Mixed"))
    tokens = await login(client, email.upper())
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 3600 and tokens["refresh_expires_in"] == 7 * 24 * 3600
    me = await client.get("/api/v1/auth/me", headers=bearer(tokens))
    assert me.status_code == 200 and me.json()["email"] == email.lower()
    assert "auth.login" in await audit_actions(engine, me.json()["id"])


async def test_unknown_email_and_wrong_password_look_the_same(client: httpx.AsyncClient) -> None:
    email = await register(client)
    wrong = await _attempt(client, email, PASSWORD + "x")
    unknown = await _attempt(client, unique_email("ghost"), PASSWORD)
    a, b = (
        assert_problem(wrong, 401, "invalid_credentials"),
        assert_problem(unknown, 401, "invalid_credentials"),
    )
    assert a == b
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"]


async def test_login_bad_input(client: httpx.AsyncClient) -> None:
    for body, field in (
        ({"password": PASSWORD}, "body.email"),
        ({"email": unique_email()}, "body.password"),
        ({"email": unique_email(), "password": PASSWORD, "totp_code": "12ab56"}, "body.totp_code"),
    ):
        problem = assert_problem(await client.post("/api/v1/auth/login", json=body), 422, "validation_error")
        assert problem["errors"][0]["field"] == field


# A lock no request outlasts however loaded the machine (1 s did, between two requests); a lock's end is
# brought forward in the database instead of waited for, so the test waits on state, never on the clock.
SLOW_LOCK = dataclasses.replace(
    TEST_POLICY,
    account_lockout=LockoutPolicy(
        max_failures=5,
        window=timedelta(minutes=15),
        base_delay=timedelta(minutes=1),
        max_delay=timedelta(hours=1),
    ),
)


async def _lock_runs_out(engine: AsyncEngine, email: str) -> None:
    """As if the account's lock had run its time: its end moved to now (the failures are kept)."""
    async with engine.begin() as conn:
        changed = await conn.execute(
            text("UPDATE auth_throttle SET locked_until = now() WHERE key = :k AND locked_until IS NOT NULL"),
            {"k": account_key(email)},
        )
    assert changed.rowcount == 1


async def test_brute_force_locks_the_account_with_growing_delay(
    client: httpx.AsyncClient, app_client: AppClient, engine: AsyncEngine
) -> None:
    email = await register(client)
    async with app_client(auth_policy=SLOW_LOCK) as here, app_client(auth_policy=SLOW_LOCK) as other:
        for _ in range(4):
            assert_problem(await _attempt(here, email, "Wrong-password-1!"), 401, "invalid_credentials")
        assert_problem(await _attempt(here, email, "Wrong-password-1!"), 401)  # the 5th failure locks
        locked = await _attempt(here, email, PASSWORD)  # even the right password now
        assert_problem(locked, 429, "locked_out")
        assert 55 <= int(locked.headers["retry-after"]) <= 60
        # From another address too: the lock is on the account, not only on the IP.
        assert (await _attempt(other, email, PASSWORD)).status_code == 429

        await _lock_runs_out(engine, email)
        assert_problem(await _attempt(here, email, "Wrong-password-1!"), 401)  # one more failure …
        relocked = await _attempt(here, email, PASSWORD)
        assert_problem(relocked, 429, "locked_out")
        assert 115 <= int(relocked.headers["retry-after"]) <= 120  # … locks again, for twice as long
        await _lock_runs_out(engine, email)
        tokens = await login(here, email)  # success resets the counter
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()
    actions = await audit_actions(engine, me["id"])
    assert actions.count("auth.login.failed") == 6 and actions.count("auth.lockout") == 2


async def test_unknown_email_locks_the_same_way(app_client: AppClient) -> None:
    ghost = unique_email("ghost")
    async with app_client(auth_policy=SLOW_LOCK) as client:
        for _ in range(5):
            assert_problem(await _attempt(client, ghost, PASSWORD), 401, "invalid_credentials")
        r = await _attempt(client, ghost, PASSWORD)
    assert_problem(r, 429, "locked_out")
    assert "retry-after" in r.headers


async def test_many_accounts_from_one_address_lock_the_address(app_client: AppClient) -> None:
    ip = random_ip()
    async with app_client(ip=ip) as client:
        for _ in range(8):  # the test policy: 8 failures per IP
            assert (await _attempt(client, unique_email("spray"), PASSWORD)).status_code == 401
        assert_problem(await _attempt(client, unique_email("spray"), PASSWORD), 429, "locked_out")
    async with app_client() as elsewhere:  # another address is unaffected
        assert (await _attempt(elsewhere, unique_email("spray"), PASSWORD)).status_code == 401


async def test_new_device_login_sends_an_alert_and_audits(
    client: httpx.AsyncClient, mail_sink: MailSink, engine: AsyncEngine
) -> None:
    email = await register(client)
    tokens = await login(client, email, device="laptop")  # first ever login: nothing to alert about
    await login(client, email, device="laptop")  # same device: nothing either
    assert [m["subject"] for m in await mail_sink.messages(to=email)] == ["Confirm your email address"]

    await login(client, email, device="phone", user_agent="BrokerApp/2.0 (iPhone)")
    alerts = [m for m in await mail_sink.messages(to=email) if m["subject"].startswith("New sign-in")]
    assert len(alerts) == 1
    assert "BrokerApp/2.0 (iPhone)" in alerts[0]["text"]
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()
    assert (await audit_actions(engine, me["id"])).count("auth.new_device") == 1

"""Change password: current password, policy, no reuse of the last five, other sessions signed out."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta

import httpx
import pyotp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth import LockoutPolicy
from tests.api.conftest import (
    PASSWORD,
    TEST_POLICY,
    AppClient,
    assert_problem,
    audit_actions,
    bearer,
    enable_2fa,
    login,
    register,
)

CHANGE = "/api/v1/auth/password"
# A lock that outlasts the test, so a second burst meets it.
SLOW_UNLOCK = dataclasses.replace(
    TEST_POLICY, account_lockout=LockoutPolicy(max_failures=5, base_delay=timedelta(minutes=10))
)


async def test_change_password_rules_and_history(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    email = await register(client)
    tokens = await login(client, email, device="main")
    elsewhere = await login(client, email, device="other")
    h = bearer(tokens)

    r = await client.post(
        CHANGE, json={"current_password": "Wrong-password-1", "new_password": "New-password-01"}, headers=h
    )
    assert assert_problem(r, 403, "wrong_password")["errors"][0]["field"] == "current_password"
    r = await client.post(CHANGE, json={"current_password": PASSWORD, "new_password": "weak"}, headers=h)
    assert assert_problem(r, 422, "weak_password")["errors"][0]["field"] == "new_password"
    r = await client.post(CHANGE, json={"current_password": PASSWORD}, headers=h)
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "body.new_password"
    r = await client.post(CHANGE, json={"current_password": PASSWORD, "new_password": PASSWORD}, headers=h)
    assert_problem(r, 422, "password_reused")

    history = [PASSWORD] + [f"New-password-{i:02d}" for i in range(1, 6)]
    for old, new in zip(history, history[1:], strict=False):
        r = await client.post(CHANGE, json={"current_password": old, "new_password": new}, headers=h)
        assert r.status_code == 204, r.text
    current = history[-1]
    # The last five (including the current one) are refused; the sixth-newest is allowed again.
    for old in history[1:]:
        r = await client.post(CHANGE, json={"current_password": current, "new_password": old}, headers=h)
        assert_problem(r, 422, "password_reused")
    r = await client.post(CHANGE, json={"current_password": current, "new_password": PASSWORD}, headers=h)
    assert r.status_code == 204, r.text

    # The session that changed it lives on; the other one was signed out; the new password logs in.
    assert (await client.get("/api/v1/auth/me", headers=h)).status_code == 200
    assert_problem(await client.get("/api/v1/auth/me", headers=bearer(elsewhere)), 401, "session_revoked")
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": history[-1]})
    assert_problem(r, 401, "invalid_credentials")
    await login(client, email)
    user_id = (await client.get("/api/v1/auth/me", headers=h)).json()["id"]
    assert (await audit_actions(engine, user_id)).count("auth.password.changed") == 6


async def test_change_password_needs_totp_when_enabled(client: httpx.AsyncClient) -> None:
    email = await register(client)
    tokens = await login(client, email)
    _, (code, _) = await enable_2fa(client, tokens)
    body = {"current_password": PASSWORD, "new_password": "Another-password-1"}
    assert_problem(await client.post(CHANGE, json=body, headers=bearer(tokens)), 403, "totp_required")
    r = await client.post(CHANGE, json=body, headers={**bearer(tokens), "X-TOTP-Code": "12"})
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "header.X-TOTP-Code"
    r = await client.post(CHANGE, json=body, headers={**bearer(tokens), "X-TOTP-Code": code})
    assert r.status_code == 204, r.text


async def _burst(
    client: httpx.AsyncClient, path: str, bodies: list[dict[str, str]], tokens: dict[str, str]
) -> list[httpx.Response]:
    return list(await asyncio.gather(*(client.post(path, json=b, headers=bearer(tokens)) for b in bodies)))


async def _password_hash(engine: AsyncEngine, email: str) -> str:
    async with engine.connect() as conn:
        row = await conn.execute(text("SELECT password_hash FROM users WHERE email = :e"), {"e": email})
        return str(row.scalar_one())


async def test_parallel_password_guesses_are_counted_one_by_one_and_the_lock_holds(
    app_client: AppClient, engine: AsyncEngine
) -> None:
    async with app_client(auth_policy=SLOW_UNLOCK) as client:
        email = await register(client)
        tokens = await login(client, email)
        new = "Brand-new-pass-1"
        wrong = [{"current_password": f"Wrong-guess-{i:03d}", "new_password": new} for i in range(40)]
        answers = await _burst(client, CHANGE, wrong, tokens)
        checked = [r for r in answers if r.status_code == 403]
        for r in checked:
            assert_problem(r, 403, "wrong_password")
        for r in answers:
            if r.status_code != 403:
                assert_problem(r, 429, "locked_out")
        assert len(checked) == SLOW_UNLOCK.account_lockout.max_failures

        before = await _password_hash(engine, email)
        right = {"current_password": PASSWORD, "new_password": "Brand-new-pass-1"}
        answers = await _burst(client, CHANGE, [*wrong[:10], right, *wrong[10:20]], tokens)
        assert {r.status_code for r in answers} == {429}
        assert await _password_hash(engine, email) == before


async def test_parallel_totp_guesses_are_counted_one_by_one(app_client: AppClient) -> None:
    async with app_client() as client:
        email = await register(client)
        tokens = await login(client, email)
        secret, _ = await enable_2fa(client, tokens)
        totp, now = pyotp.TOTP(secret), time.time()
        valid = {totp.at(now + d) for d in (-60, -30, 0, 30, 60)}
        wrong = [c for c in (f"{i * 24_391 % 1_000_000:06d}" for i in range(1, 60)) if c not in valid][:40]
        answers = await asyncio.gather(
            *(
                client.patch(
                    "/api/v1/auth/me",
                    json={"first_name": "X"},
                    headers={**bearer(tokens), "X-TOTP-Code": code},
                )
                for code in wrong
            )
        )
        statuses = sorted(r.status_code for r in answers)
        assert statuses.count(403) <= TEST_POLICY.totp_lockout.max_failures, statuses
        assert statuses.count(403) + statuses.count(429) == 40, statuses


async def test_parallel_guesses_on_2fa_enrolment_are_counted_one_by_one(app_client: AppClient) -> None:
    async with app_client(auth_policy=SLOW_UNLOCK) as client:
        email = await register(client)
        tokens = await login(client, email)
        wrong = [{"password": f"Wrong-guess-{i:03d}"} for i in range(40)]
        answers = await _burst(client, "/api/v1/auth/2fa/enroll", wrong, tokens)
        statuses = sorted(r.status_code for r in answers)
        assert statuses.count(403) == SLOW_UNLOCK.account_lockout.max_failures
        assert statuses.count(429) == 40 - SLOW_UNLOCK.account_lockout.max_failures
        right = {"password": PASSWORD}
        answers = await _burst(client, "/api/v1/auth/2fa/enroll", [*wrong[:5], right], tokens)
        assert {r.status_code for r in answers} == {429}
        me = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()
        assert me["twofa_enabled"] is False

"""Change password: current password, policy, no reuse of the last five, other sessions signed out."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import PASSWORD, assert_problem, audit_actions, bearer, enable_2fa, login, register

CHANGE = "/api/v1/auth/password"


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

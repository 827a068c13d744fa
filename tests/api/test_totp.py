"""TOTP 2FA: enrol, confirm, login with a code, replay refused, disable needs a code, step-up for settings."""

from __future__ import annotations

import httpx
import pyotp
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import (
    PASSWORD,
    assert_problem,
    audit_actions,
    bearer,
    enable_2fa,
    login,
    register,
    totp_codes,
)

LOGIN = "/api/v1/auth/login"


async def test_enrol_gives_secret_and_otpauth_uri_and_confirm_needs_a_valid_code(
    client: httpx.AsyncClient,
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    r = await client.post(
        "/api/v1/auth/2fa/enroll", json={"password": "Wrong-password-1"}, headers=bearer(tokens)
    )
    assert_problem(r, 403, "wrong_password")
    r = await client.post("/api/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=bearer(tokens))
    assert r.status_code == 200
    enrolment = r.json()
    assert enrolment["otpauth_uri"].startswith("otpauth://totp/")
    assert pyotp.parse_uri(enrolment["otpauth_uri"]).secret == enrolment["secret"]

    # Not enforced until confirmed: login still works without a code.
    await login(client, email)
    wrong = "000000" if pyotp.TOTP(enrolment["secret"]).now() != "000000" else "111111"
    r = await client.post("/api/v1/auth/2fa/confirm", json={"code": wrong}, headers=bearer(tokens))
    assert_problem(r, 403, "totp_invalid")
    r = await client.post("/api/v1/auth/2fa/confirm", json={"code": "12345"}, headers=bearer(tokens))
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "body.code"
    code = pyotp.TOTP(enrolment["secret"]).now()
    r = await client.post("/api/v1/auth/2fa/confirm", json={"code": code}, headers=bearer(tokens))
    assert r.status_code == 200 and r.json() == {"enabled": True}
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()
    assert me["twofa_enabled"] is True and "secret" not in str(me)
    r = await client.post("/api/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=bearer(tokens))
    assert_problem(r, 409, "totp_already_enabled")


async def test_login_needs_the_code_and_a_code_works_once_only(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    _, (code, _next) = await enable_2fa(client, tokens)

    r = await client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert_problem(r, 401, "totp_required")
    await login(client, email, totp_code=code)
    r = await client.post(LOGIN, json={"email": email, "password": PASSWORD, "totp_code": code})
    assert_problem(r, 401, "totp_replayed")  # same code, same window: refused
    user_id = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()["id"]
    actions = await audit_actions(engine, user_id)
    assert "auth.2fa.enabled" in actions and "auth.2fa.failed" in actions


async def test_disable_needs_a_valid_unused_code(client: httpx.AsyncClient, engine: AsyncEngine) -> None:
    email = await register(client)
    tokens = await login(client, email)
    secret, (code, _next) = await enable_2fa(client, tokens)
    disable = "/api/v1/auth/2fa/disable"
    problem = assert_problem(
        await client.post(disable, json={}, headers=bearer(tokens)), 422, "validation_error"
    )
    assert problem["errors"][0]["field"] == "body.code"
    wrong = "000000" if code != "000000" else "111111"
    assert_problem(
        await client.post(disable, json={"code": wrong}, headers=bearer(tokens)), 403, "totp_invalid"
    )
    assert_problem(await client.post(disable, json={"code": code}), 401, "not_authenticated")
    r = await client.post(disable, json={"code": code}, headers=bearer(tokens))
    assert r.status_code == 200 and r.json() == {"enabled": False}
    assert_problem(
        await client.post(disable, json={"code": _next}, headers=bearer(tokens)), 409, "totp_not_enabled"
    )
    await login(client, email)  # no code needed any more
    user_id = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()["id"]
    assert "auth.2fa.disabled" in await audit_actions(engine, user_id)


async def test_settings_change_needs_the_code_when_2fa_is_on(client: httpx.AsyncClient) -> None:
    email = await register(client)
    tokens = await login(client, email)
    r = await client.patch("/api/v1/auth/me", json={"first_name": "Grace"}, headers=bearer(tokens))
    assert r.status_code == 200 and r.json()["first_name"] == "Grace"  # no 2FA yet: no code needed

    _, (code, _next) = await enable_2fa(client, tokens)
    r = await client.patch("/api/v1/auth/me", json={"last_name": "Hopper"}, headers=bearer(tokens))
    assert assert_problem(r, 403, "totp_required")["errors"][0]["field"] == "header.X-TOTP-Code"
    headers = {**bearer(tokens), "X-TOTP-Code": code}
    r = await client.patch("/api/v1/auth/me", json={"last_name": "Hopper"}, headers=headers)
    assert r.status_code == 200 and r.json()["last_name"] == "Hopper" and r.json()["first_name"] == "Grace"
    r = await client.patch("/api/v1/auth/me", json={"last_name": "Again"}, headers=headers)
    assert_problem(r, 403, "totp_replayed")
    r = await client.patch(
        "/api/v1/auth/me", json={"phone": "not a phone"}, headers={**bearer(tokens), "X-TOTP-Code": _next}
    )
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "body.phone"


async def test_wrong_codes_lock_the_second_factor(client: httpx.AsyncClient) -> None:
    email = await register(client)
    tokens = await login(client, email)
    secret, _ = await enable_2fa(client, tokens)
    valid = set(await totp_codes(secret))
    wrong = [c for c in ("000001", "000002", "000003", "000004", "000005", "000006") if c not in valid]
    for c in wrong[:5]:
        r = await client.patch("/api/v1/auth/me", json={}, headers={**bearer(tokens), "X-TOTP-Code": c})
        assert_problem(r, 403, "totp_invalid")
    r = await client.patch("/api/v1/auth/me", json={}, headers={**bearer(tokens), "X-TOTP-Code": wrong[-1]})
    assert_problem(r, 429, "totp_locked")
    assert "retry-after" in r.headers

"""JWTs: tampered, expired, wrong type, wrong audience; refresh rotation and reuse; logout; sessions."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from tests.api.conftest import (
    AppClient,
    assert_problem,
    audit_actions,
    bearer,
    login,
    register,
)

ME = "/api/v1/auth/me"


def _b64(obj: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _forge(settings: Settings, claims: dict[str, object], secret: str | None = None) -> str:
    now = datetime.now(UTC)
    base = {
        "typ": "access",
        "iss": "broker-api",
        "aud": "broker-customers",
        "sub": str(uuid.uuid4()),
        "sid": str(uuid.uuid4()),
        "jti": "x",
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(hours=1)).timestamp()),
    }
    return jwt.encode({**base, **claims}, secret or settings.jwt_secret, algorithm="HS256")


async def test_bad_access_tokens_are_401_problems(client: httpx.AsyncClient, api_settings: Settings) -> None:
    email = await register(client)
    tokens = await login(client, email)
    good = tokens["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    head, payload, sig = good.split(".")
    tampered_payload = _b64({**claims, "sub": str(uuid.uuid4())})
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    now = datetime.now(UTC)
    cases = {
        "invalid_token": [
            f"{head}.{tampered_payload}.{sig}",
            f"{head}.{payload}.{flipped}",
            "garbage",
            _forge(api_settings, {**claims}, secret="another-secret-that-is-long-enough-0123456789"),
            _forge(api_settings, {**claims, "aud": "someone-else"}),
            _forge(api_settings, {**claims, "iss": "evil"}),
            f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",  # "alg": "none" is never accepted
        ],
        "token_expired": [
            _forge(
                api_settings,
                {
                    **claims,
                    "iat": int((now - timedelta(hours=2)).timestamp()),
                    "exp": int((now - timedelta(hours=1)).timestamp()),
                },
            ),
        ],
        "wrong_token_type": [
            tokens["refresh_token"],
            _forge(api_settings, {**claims, "typ": "email_verify"}),
        ],
        "session_revoked": [_forge(api_settings, {**claims, "sid": str(uuid.uuid4())})],
    }
    for code, bad_tokens in cases.items():
        for token in bad_tokens:
            r = await client.get(ME, headers=bearer(token))
            assert_problem(r, 401, code)
            assert r.headers["www-authenticate"].startswith("Bearer")
    # A token without the claims we require is refused even if signed correctly.
    no_exp = jwt.encode(
        {k: v for k, v in claims.items() if k != "exp"}, api_settings.jwt_secret, algorithm="HS256"
    )
    assert_problem(await client.get(ME, headers=bearer(no_exp)), 401, "invalid_token")
    assert_problem(await client.get(ME), 401, "not_authenticated")
    assert_problem(await client.get(ME, headers={"Authorization": f"Basic {good}"}), 401)
    assert (await client.get(ME, headers=bearer(good))).status_code == 200


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    email = await register(client)
    first = await login(client, email)
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["session_id"] == first["session_id"]
    user_id = (await client.get(ME, headers=bearer(second))).json()["id"]

    # The first refresh token again: a replay. The whole session dies, including the newest tokens.
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(r, 401, "refresh_token_reused")
    assert_problem(await client.get(ME, headers=bearer(second)), 401, "session_revoked")
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_problem(r, 401, "session_revoked")
    actions = await audit_actions(engine, user_id)
    assert "auth.refresh" in actions and "auth.refresh.reuse_detected" in actions

    # An access token is not a refresh token; bad input names the field.
    other = await login(client, email)
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": other["access_token"]})
    assert_problem(r, 401, "wrong_token_type")
    problem = assert_problem(await client.post("/api/v1/auth/refresh", json={}), 422, "validation_error")
    assert problem["errors"][0]["field"] == "body.refresh_token"
    assert (await client.get(ME, headers=bearer(other))).status_code == 200  # other session untouched


async def test_logout_revokes_access_and_refresh_at_once(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    user_id = (await client.get(ME, headers=bearer(tokens))).json()["id"]
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    assert_problem(await client.get(ME, headers=bearer(tokens)), 401, "session_revoked")
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(r, 401, "session_revoked")
    assert_problem(await client.post("/api/v1/auth/logout", headers=bearer(tokens)), 401)
    assert "auth.logout" in await audit_actions(engine, user_id)


async def test_sessions_list_and_revoke_and_other_customers_get_404(
    client: httpx.AsyncClient, app_client: AppClient
) -> None:
    alice = await register(client)
    bob = await register(client)
    a1 = await login(client, alice, device="a1")
    a2 = await login(client, alice, device="a2")
    b1 = await login(client, bob)

    r = await client.get("/api/v1/auth/sessions", headers=bearer(a1))
    assert r.status_code == 200
    sessions = r.json()
    assert {s["id"] for s in sessions} == {a1["session_id"], a2["session_id"]}
    assert [s["current"] for s in sessions if s["id"] == a1["session_id"]] == [True]

    # Bob can neither see nor revoke Alice's session: 404, as if it did not exist.
    bob_view = (await client.get("/api/v1/auth/sessions", headers=bearer(b1))).json()
    assert [s["id"] for s in bob_view] == [b1["session_id"]]
    r = await client.delete(f"/api/v1/auth/sessions/{a2['session_id']}", headers=bearer(b1))
    assert_problem(r, 404, "not_found")
    assert (await client.get(ME, headers=bearer(a2))).status_code == 200

    assert (
        await client.delete(f"/api/v1/auth/sessions/{a2['session_id']}", headers=bearer(a1))
    ).status_code == 204
    assert_problem(await client.get(ME, headers=bearer(a2)), 401, "session_revoked")
    assert_problem(await client.delete(f"/api/v1/auth/sessions/{a2['session_id']}", headers=bearer(a1)), 404)
    r = await client.delete("/api/v1/auth/sessions/not-a-uuid", headers=bearer(a1))
    assert assert_problem(r, 422, "validation_error")["errors"][0]["field"] == "path.session_id"


async def test_a_read_only_route_authenticates_as_every_other_route_does(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    # `GET /accounts/balances` authenticates on its read connection (`VerifiedReader`), not through the
    # ORM session: the same answers, the same revocation at once.
    balances = "/api/v1/accounts/balances"
    email = await register(client)
    tokens = await login(client, email)
    assert_problem(await client.get(balances), 401, "not_authenticated")
    assert_problem(await client.get(balances, headers=bearer(tokens)), 403, "email_not_verified")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET email_verified = true WHERE email = :e"), {"e": email})
    r = await client.get(balances, headers=bearer(tokens))
    assert r.status_code == 200 and r.json()["balances"][0] == {
        "currency": "GBP", "balance": "0.00", "available": "0.00", "reserved": "0.00"
    }  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET status = 'SUSPENDED' WHERE email = :e"), {"e": email})
    assert_problem(await client.get(balances, headers=bearer(tokens)), 403, "account_disabled")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET status = 'ACTIVE' WHERE email = :e"), {"e": email})
    assert (await client.post("/api/v1/auth/logout", headers=bearer(tokens))).status_code == 204
    assert_problem(await client.get(balances, headers=bearer(tokens)), 401, "session_revoked")

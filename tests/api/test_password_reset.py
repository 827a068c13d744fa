"""Password reset: the same answer for any address, an emailed single-use token with an expiry, the
policy checked, every session revoked, a security email; requests are rate-limited."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from services.auth import LockoutPolicy
from tests.api.conftest import (
    PASSWORD,
    TEST_POLICY,
    AppClient,
    MailSink,
    assert_problem,
    audit_actions,
    bearer,
    login,
    register,
    unique_email,
)

REQUEST = "/api/v1/auth/password-reset"
CONFIRM = "/api/v1/auth/password-reset/confirm"
NEW = "Fresh-Reset-Pass-77"


async def _reset_token(mail_sink: MailSink, email: str) -> str:
    mails = [m for m in await mail_sink.messages(to=email.lower()) if m["subject"] == "Reset your password"]
    assert mails, "no reset email"
    found = re.search(r"#token=([A-Za-z0-9._-]+)", mails[-1]["text"])
    assert found is not None
    return found.group(1)


async def test_the_answer_is_the_same_for_known_and_unknown_addresses(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = await register(client)
    ghost = unique_email("ghost")
    known = await client.post(REQUEST, json={"email": email.upper()})
    unknown = await client.post(REQUEST, json={"email": ghost})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    assert await _reset_token(mail_sink, email)
    assert await mail_sink.messages(to=ghost) == []


async def test_a_reset_sets_the_password_once_and_signs_everyone_out(
    client: httpx.AsyncClient, mail_sink: MailSink, engine: AsyncEngine
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    await client.post(REQUEST, json={"email": email})
    first = await _reset_token(mail_sink, email)
    await client.post(REQUEST, json={"email": email})
    second = await _reset_token(mail_sink, email)

    r = await client.post(CONFIRM, json={"token": second, "new_password": "weak"})
    assert assert_problem(r, 422, "weak_password")["errors"][0]["field"] == "new_password"
    r = await client.post(CONFIRM, json={"token": second, "new_password": PASSWORD})
    assert_problem(r, 422, "password_reused")
    r = await client.post(CONFIRM, json={"token": "eyJ.not.valid", "new_password": NEW})
    assert_problem(r, 401, "invalid_token")
    r = await client.post(CONFIRM, json={"token": tokens["access_token"], "new_password": NEW})
    assert_problem(r, 401)

    assert (await client.post(CONFIRM, json={"token": second, "new_password": NEW})).status_code == 204
    assert_problem(await client.get("/api/v1/auth/me", headers=bearer(tokens)), 401, "session_revoked")
    r = await client.post(CONFIRM, json={"token": second, "new_password": "Yet-Another-Pass-88"})
    assert_problem(r, 401, "reset_token_used")
    r = await client.post(CONFIRM, json={"token": first, "new_password": "Yet-Another-Pass-88"})
    assert_problem(r, 401, "reset_token_used")  # issued before the reset: dead too
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(r, 401, "invalid_credentials")
    fresh = await login(client, email, NEW)
    assert (await client.get("/api/v1/auth/me", headers=bearer(fresh))).json()["email_verified"] is True

    subjects = [m["subject"] for m in await mail_sink.messages(to=email)]
    assert subjects[-1] == "Your Broker password was reset"
    user_id = (await client.get("/api/v1/auth/me", headers=bearer(fresh))).json()["id"]
    actions = await audit_actions(engine, user_id)
    assert actions.count("auth.password_reset") == 1 and actions.count("auth.password_reset.requested") == 2


async def test_an_expired_reset_token_is_refused(app_client: AppClient, mail_sink: MailSink) -> None:
    expired = dataclasses.replace(TEST_POLICY, reset_token_ttl=timedelta(seconds=-1))
    async with app_client(auth_policy=expired) as client:
        email = await register(client)
        await client.post(REQUEST, json={"email": email})
        token = await _reset_token(mail_sink, email)
        r = await client.post(CONFIRM, json={"token": token, "new_password": NEW})
        assert_problem(r, 401, "token_expired")
        await login(client, email)


async def test_reset_requests_are_rate_limited_per_address_and_per_client(
    app_client: AppClient, mail_sink: MailSink
) -> None:
    policy = dataclasses.replace(
        TEST_POLICY,
        reset_emails=LockoutPolicy(max_failures=2, base_delay=timedelta(minutes=5)),
        reset_requests_per_ip=LockoutPolicy(max_failures=4, base_delay=timedelta(minutes=5)),
    )
    async with app_client(auth_policy=policy) as client:
        email = await register(client)
        answers = [await client.post(REQUEST, json={"email": email}) for _ in range(4)]
        assert {r.status_code for r in answers} == {202}
        assert len({r.text for r in answers}) == 1  # the per-address limit does not show in the answer
        resets = [m for m in await mail_sink.messages(to=email) if m["subject"] == "Reset your password"]
        assert len(resets) == 2
        r = await client.post(REQUEST, json={"email": unique_email()})
        assert_problem(r, 429, "locked_out")
        assert int(r.headers["retry-after"]) > 0


async def test_parallel_confirms_with_one_token_set_the_password_once(
    client: httpx.AsyncClient, mail_sink: MailSink
) -> None:
    email = await register(client)
    await client.post(REQUEST, json={"email": email})
    token = await _reset_token(mail_sink, email)
    passwords = [f"Parallel-Pass-{i:02d}x" for i in range(8)]
    answers = await asyncio.gather(
        *(client.post(CONFIRM, json={"token": token, "new_password": p}) for p in passwords)
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [204] + [401] * 7, statuses
    winner = passwords[[r.status_code for r in answers].index(204)]
    await login(client, email, winner)

"""Registration, the verification email through the sink, and the link that verifies."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import (
    PASSWORD,
    TEST_POLICY,
    MailSink,
    assert_problem,
    audit_actions,
    bearer,
    login,
    register,
    unique_email,
)


async def test_register_sends_a_verification_link_that_verifies(
    client: httpx.AsyncClient, mail_sink: MailSink, engine: AsyncEngine
) -> None:
    email = unique_email("Verify")
    r = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "first_name": "Ada"}
    )
    assert r.status_code == 202, r.text
    assert "password" not in r.text and email.lower() not in r.text.lower()
    first = await login(client, email)
    user = (await client.get("/api/v1/auth/me", headers=bearer(first))).json()
    assert user["email"] == email.lower() and user["email_verified"] is False and user["first_name"] == "Ada"

    mails = await mail_sink.messages(to=email.lower())
    assert len(mails) == 1
    mail = mails[0]
    assert mail["subject"] == "Confirm your email address"
    link = re.search(r"https?://\S+/api/v1/auth/verify-email\?token=\S+", mail["text"])
    assert link is not None and link.group(0) in (mail["html"] or "").replace("&amp;", "&")

    parts = urlsplit(link.group(0))
    r = await client.get(f"{parts.path}?{parts.query}")
    assert r.status_code == 200, r.text
    assert r.json()["email_verified"] is True
    # The link still answers (idempotent) and the account says so.
    assert (await client.get(f"{parts.path}?{parts.query}")).status_code == 200
    tokens = await login(client, email)
    assert (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()["email_verified"] is True
    actions = await audit_actions(engine, user["id"])
    assert actions.count("auth.email_verified") == 1 and "auth.register" in actions


async def test_verification_token_tampered_or_of_wrong_kind_is_refused(client: httpx.AsyncClient) -> None:
    email = await register(client)
    tokens = await login(client, email)
    for token in ("not-a-token", tokens["access_token"], tokens["refresh_token"]):
        r = await client.post("/api/v1/auth/verify-email", json={"token": token})
        assert_problem(r, 401, "invalid_token")
    r = await client.get("/api/v1/auth/verify-email")
    body = assert_problem(r, 422, "validation_error")
    assert body["errors"][0]["field"] == "query.token"


async def test_resend_verification(client: httpx.AsyncClient, mail_sink: MailSink) -> None:
    email = await register(client)
    tokens = await login(client, email)
    r = await client.post("/api/v1/auth/verify-email/resend", headers=bearer(tokens))
    assert r.status_code == 202
    mails = await mail_sink.messages(to=email)
    assert len(mails) == 2
    token = mails[-1]["text"].split("token=")[1].split()[0]
    assert (await client.post("/api/v1/auth/verify-email", json={"token": token})).status_code == 200
    r = await client.post("/api/v1/auth/verify-email/resend", headers=bearer(tokens))
    assert_problem(r, 409, "already_verified")


async def test_register_bad_input_names_the_field(client: httpx.AsyncClient) -> None:
    cases = [
        ({"email": "not-an-email", "password": PASSWORD}, "body.email", "validation_error"),
        ({"password": PASSWORD}, "body.email", "validation_error"),
        ({"email": unique_email(), "password": "x" * 200}, "body.password", "validation_error"),
        ({"email": unique_email(), "password": "short"}, "password", "weak_password"),
        ({"email": unique_email(), "password": "alllowercaseletters"}, "password", "weak_password"),
    ]
    for body, field, code in cases:
        r = await client.post("/api/v1/auth/register", json=body)
        problem = assert_problem(r, 422, code)
        assert [e["field"] for e in problem["errors"]] == [field], problem
    r = await client.post(
        "/api/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(r, 422, "validation_error")


async def test_registering_a_taken_email_answers_as_for_a_new_one_and_tells_the_owner(
    client: httpx.AsyncClient, mail_sink: MailSink, engine: AsyncEngine
) -> None:
    email = await register(client, unique_email("Case"))
    fresh = await client.post("/api/v1/auth/register", json={"email": unique_email(), "password": PASSWORD})
    again = await client.post(
        "/api/v1/auth/register", json={"email": email.upper(), "password": "Other-password-42"}
    )
    assert again.status_code == fresh.status_code == 202
    assert again.json() == fresh.json() and again.headers.keys() - {
        "x-request-id"
    } == fresh.headers.keys() - {"x-request-id"}
    mails = await mail_sink.messages(to=email.lower())
    assert [m["subject"] for m in mails] == [
        "Confirm your email address",
        "Someone tried to sign up with your email address",
    ]
    for _ in range(5):  # repeated attempts: the owner is told a few times, not flooded
        r = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 202
    told = [m for m in await mail_sink.messages(to=email.lower()) if m["subject"].startswith("Someone")]
    assert len(told) == TEST_POLICY.reset_emails.max_failures
    tokens = await login(client, email.upper())  # the original password still works: nothing changed
    r = await client.post("/api/v1/auth/login", json={"email": email, "password": "Other-password-42"})
    assert_problem(r, 401, "invalid_credentials")
    user_id = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()["id"]
    assert "auth.register.existing_email" in await audit_actions(engine, user_id)

"""No token, password, password hash, TOTP secret or email reaches a log line, whoever writes it."""

from __future__ import annotations

import logging
import re

import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from config.log_redaction import redact
from tests.api.conftest import PASSWORD, AppClient, MailSink, bearer, login, unique_email


async def test_a_full_flow_logs_no_secret(
    app_client: AppClient, mail_sink: MailSink, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    email = unique_email("Logged")
    new_password = "Second-Horse-7-battery"
    with caplog.at_level(logging.DEBUG):  # everything, SQLAlchemy's statement log included
        async with app_client() as client:
            r = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert r.status_code in (201, 202), r.text
            mail = (await mail_sink.messages(to=email.lower()))[-1]
            found = re.search(r"token=([A-Za-z0-9._-]+)", mail["text"])
            assert found is not None
            verify_token = found.group(1)
            assert (await client.get(f"/api/v1/auth/verify-email?token={verify_token}")).status_code == 200
            tokens = await login(client, email)
            r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 200, r.text
            tokens = r.json()
            r = await client.post(
                "/api/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=bearer(tokens)
            )
            secret = r.json()["secret"]
            r = await client.post(
                "/api/v1/auth/2fa/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=bearer(tokens)
            )
            assert r.status_code == 200, r.text
            r = await client.post("/api/v1/auth/login", json={"email": email, "password": "Wrong-password-9"})
            assert r.status_code == 401
            async with engine.connect() as conn:
                password_hash = (
                    await conn.execute(
                        text("SELECT password_hash FROM users WHERE email = :e"), {"e": email.lower()}
                    )
                ).scalar_one()
            # A failing statement carrying the hash and the email, logged with its traceback as the
            # 500 handler does.
            try:
                async with engine.connect() as conn:
                    await conn.execute(
                        text("SELECT CAST(:h AS integer), CAST(:e AS integer)"),
                        {"h": password_hash, "e": email},
                    )
            except DBAPIError:
                logging.getLogger("api.errors").exception("unhandled error on POST /api/v1/x")
            # What uvicorn writes for a WebSocket opened the old way, and a client echoing a header.
            logging.getLogger("uvicorn.error").info(
                '%s - "WebSocket %s" [accepted]',
                "127.0.0.1:5000",
                f"/api/v1/ws?token={tokens['access_token']}",
            )
            logging.getLogger("api.test").info(
                "headers: %s", {"authorization": f"Bearer {tokens['access_token']}"}
            )
            r = await client.post(
                "/api/v1/auth/password",
                json={"current_password": PASSWORD, "new_password": new_password},
                headers=bearer(tokens),
            )
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "unhandled error" in logged and "SELECT CAST" in logged  # the lines are there, scrubbed
    for secret_value in (
        tokens["access_token"],
        tokens["refresh_token"],
        verify_token,
        password_hash,
        password_hash.split("$")[-1],
        secret,
        PASSWORD,
        new_password,
        email,
        email.lower(),
    ):
        assert secret_value not in logged, secret_value


def test_redaction_shapes() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    cases = {
        f"GET /api/v1/ws?token={jwt}&x=1": "GET /api/v1/ws?token=[REDACTED]&x=1",
        "Authorization: Bearer abc.def-ghi": "Authorization: Bearer [REDACTED]",
        '{"password": "hunter2", "ok": 1}': '{"password": "[REDACTED]", "ok": 1}',
        "password_hash='$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA'": "password_hash=[REDACTED]",
        "Key (email)=(a@b.example) already exists.": "Key (email)=([REDACTED]) already exists.",
        "[SQL: INSERT x]\n[parameters: {'a': 'secret'}]\n(Background on this error": "[SQL: INSERT x]\n"
        "[parameters: [REDACTED]]\n(Background on this error",
        "mail to ann.lee@example.co.uk failed": "mail to [email] failed",
        'invalid input syntax for type integer: "$x,y"\nCONTEXT': "invalid input syntax for type integer: "
        '"[REDACTED]"\nCONTEXT',
        "Failing row contains (1, a, $argon2id$x).\n": "Failing row contains ([REDACTED]).\n",
        "status_code=500 latency": "status_code=500 latency",
    }
    for raw, expected in cases.items():
        assert redact(raw) == expected, (raw, redact(raw))

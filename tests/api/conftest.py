"""Fixtures for the API tests: the mail sink started in-process, and app clients built on the session's
real PostgreSQL with small limits so lock-outs and rate limits trigger in a few requests.

Each client gets its own fake client IP and each test its own email addresses, so the per-IP and
per-account counters (which live in the shared database) never leak between tests.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pyotp
import pytest
import pytest_asyncio
from aiohttp import web
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from providers.email import EmailSender
from providers.notification_channels import build_senders
from sandbox.mail import create_app as create_mail_app
from services.auth import AuthPolicy, LockoutPolicy
from services.notifications.dispatcher import Dispatcher, policy_from_settings

# The sendgrid client is urllib-based and honours proxy variables; the sink is local.
os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")

PASSWORD = "Correct-Horse-9-battery"
TEST_POLICY = AuthPolicy(
    account_lockout=LockoutPolicy(
        max_failures=5,
        window=timedelta(minutes=15),
        base_delay=timedelta(seconds=1),
        max_delay=timedelta(seconds=60),
    ),
    ip_lockout=LockoutPolicy(max_failures=8, base_delay=timedelta(seconds=1)),
    totp_lockout=LockoutPolicy(max_failures=5, base_delay=timedelta(seconds=1)),
)
# High enough that only the rate-limit tests (which pass their own) ever meet them.
TEST_LIMITS = RateLimits(anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000)


class MailSink:
    """The in-process SendGrid stand-in, read over its HTTP API like a tester would.

    Mail goes through the notification outbox; `messages` first delivers what is due (the apps' own
    dispatchers are off here), so a test reads every mail its requests committed."""

    def __init__(self, url: str, api_key: str, settings: Settings, engine: AsyncEngine) -> None:
        self.url = url
        self.api_key = api_key
        self._dispatcher = Dispatcher(
            engine,
            build_senders(settings.model_copy(update={"sendgrid_host": url})),
            policy_from_settings(settings),
        )

    async def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        while await self._dispatcher.run_once():
            pass
        async with httpx.AsyncClient(base_url=self.url) as c:
            r = await c.get("/messages", params={"to": to} if to else None)
            r.raise_for_status()
            result: list[dict[str, Any]] = r.json()
            return result


@pytest_asyncio.fixture(scope="session")
async def mail_sink(settings: Settings, engine: AsyncEngine) -> AsyncIterator[MailSink]:
    runner = web.AppRunner(create_mail_app(settings.sendgrid_api_key))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield MailSink(f"http://127.0.0.1:{port}", settings.sendgrid_api_key, settings, engine)
    finally:
        await runner.cleanup()


@pytest.fixture(scope="session")
def api_settings(settings: Settings, mail_sink: MailSink) -> Settings:
    return settings.model_copy(update={"sendgrid_host": mail_sink.url, "notification_dispatcher": False})


def random_ip() -> str:
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


AppClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def app_client(api_settings: Settings) -> AppClient:
    """`async with app_client(...) as client:` a fresh app (lifespan running) behind an in-process client.

    Keyword arguments: `rate_limits`, `auth_policy`, `ip` (the client's address), `app` (a prebuilt one).
    """

    @asynccontextmanager
    async def make(
        *,
        rate_limits: RateLimits = TEST_LIMITS,
        auth_policy: AuthPolicy = TEST_POLICY,
        ip: str | None = None,
        app: FastAPI | None = None,
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = app or build_app(api_settings, rate_limits=rate_limits, auth_policy=auth_policy)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(ip or random_ip(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return make


def build_app(
    settings: Settings, *, rate_limits: RateLimits = TEST_LIMITS, auth_policy: AuthPolicy = TEST_POLICY
) -> FastAPI:
    return create_app(
        settings,
        rate_limits=rate_limits,
        auth_policy=auth_policy,
        email_sender=EmailSender.from_settings(settings),
    )


@pytest_asyncio.fixture
async def client(app_client: AppClient) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client() as c:
        yield c


async def register(client: httpx.AsyncClient, email: str | None = None, password: str = PASSWORD) -> str:
    email = email or unique_email()
    r = await client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert r.status_code == 202, r.text
    return email


async def login(
    client: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    *,
    device: str = "device-1",
    user_agent: str = "pytest-agent/1.0",
    totp_code: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email, "password": password}
    if totp_code:
        body["totp_code"] = totp_code
    r = await client.post(
        "/api/v1/auth/login", json=body, headers={"X-Device-Id": device, "User-Agent": user_agent}
    )
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


def bearer(tokens: dict[str, Any] | str) -> dict[str, str]:
    token = tokens if isinstance(tokens, str) else tokens["access_token"]
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The one error shape: RFC 9457 fields, problem+json, and nothing that looks like a stack trace."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["type"] and body["instance"]
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body


async def audit_actions(engine: AsyncEngine, user_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT action FROM audit_log WHERE target_id = :u ORDER BY created_at, action"),
            {"u": user_id},
        )
        return [r[0] for r in rows]


async def totp_codes(secret: str) -> list[str]:
    """Three codes for consecutive time steps (previous, current, next), each accepted once and only in
    this order. Waits out the end of a step first, so all three stay inside the ±1-step drift window
    while the test runs."""
    into_step = time.time() % 30
    if into_step > 25:
        await asyncio.sleep(30 - into_step + 0.1)
    now = time.time()
    totp = pyotp.TOTP(secret)
    return [totp.at(now - 30), totp.at(now), totp.at(now + 30)]


async def enable_2fa(client: httpx.AsyncClient, tokens: dict[str, Any]) -> tuple[str, list[str]]:
    """Enrol and confirm 2FA with the first code; returns the secret and the two codes still unused."""
    r = await client.post("/api/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    secret = r.json()["secret"]
    codes = await totp_codes(secret)
    r = await client.post("/api/v1/auth/2fa/confirm", json={"code": codes[0]}, headers=bearer(tokens))
    assert r.status_code == 200, r.text
    return secret, codes[1:]

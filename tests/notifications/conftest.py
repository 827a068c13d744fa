"""The notifications test stack, started once for the package: the mail sink (SendGrid), the Twilio
sandbox and the ops webhook sink on free ports, and the real API under uvicorn (so the sandboxes' signed
callbacks arrive over HTTP). The API's own dispatcher is off: each test runs the dispatchers it needs
(`stack.dispatcher()`), so a test can kill one in the middle of a send and start another.

Timings are short (lease, grace, backoff) so retries and in-doubt lookups take fractions of a second;
tests wait on state (`stack.eventually`), never on time.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest_asyncio
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from devstack.ports import free_port
from providers.notification_channels import build_senders
from sandbox.runner import start_venues
from services.notifications.dispatcher import Dispatcher, DispatchPolicy, policy_from_settings
from services.passwords import hash_password
from tests import totp_codes

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
PASSWORD = "Correct-Horse-9-battery"
T = TypeVar("T")


@dataclass
class Customer:
    id: uuid.UUID
    email: str
    phone: str | None
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stack:
    settings: Settings
    engine: AsyncEngine
    api_url: str
    mail_url: str
    twilio_url: str
    hook_url: str

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=30)

    def policy(self, **overrides: Any) -> DispatchPolicy:
        base = policy_from_settings(self.settings)
        return DispatchPolicy(**{**{f: getattr(base, f) for f in base.__slots__}, **overrides})

    def dispatcher(self, **overrides: Any) -> Dispatcher:
        return Dispatcher(self.engine, build_senders(self.settings), self.policy(**overrides))

    async def sandbox(self, base: str, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json() if r.content else None

    async def mails(self, to: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.sandbox(
            self.mail_url, "GET", "/messages", params={"to": to}
        )
        return result

    async def sms(self, to: str) -> list[dict[str, Any]]:
        found = await self.sandbox(self.twilio_url, "GET", "/_control/messages")
        return [m for m in found if m["to"] == to]

    async def hooks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.sandbox(self.hook_url, "GET", "/_control/messages")
        return result

    async def deliveries(self, outbox_dedupe_key: str) -> dict[str, dict[str, Any]]:
        async with self.engine.connect() as c:
            rows = (
                await c.execute(
                    text(
                        "SELECT d.* FROM notification_deliveries d JOIN notification_outbox o "
                        "ON o.id = d.outbox_id WHERE o.dedupe_key = :k"
                    ),
                    {"k": outbox_dedupe_key},
                )
            ).all()
        return {r.channel: dict(r._mapping) for r in rows}

    async def customer(self, *, phone: str | None = None) -> Customer:
        uid = uuid.uuid4()
        email = f"notify-{uid.hex[:12]}@example.com"
        async with self.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, kyc_tier, email_verified, phone, "
                    "first_name, last_name) VALUES (:i, :e, :p, 1, true, :ph, 'Ada', 'Lovelace')"
                ),
                {"i": uid, "e": email, "p": hash_password(PASSWORD), "ph": phone},
            )
        async with self.http() as h:
            r = await h.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
        async with self.engine.begin() as c:  # the login's new-device notice is not what the tests look at
            await c.execute(
                text("UPDATE notification_outbox SET fanned_out_at = now() WHERE user_id = :u"), {"u": uid}
            )
        return Customer(uid, email, phone, r.json()["access_token"])

    async def staff(self, role: str) -> Customer:
        person = await self.customer()
        async with self.engine.begin() as c:
            await c.execute(
                text("UPDATE users SET roles = ARRAY[:r] WHERE id = :i"), {"r": role, "i": person.id}
            )
            await totp_codes.enable_second_factor(c, person.id)  # staff routes need it
        return person


def unique_phone() -> str:
    """A UK mobile number no other test uses: other packages' customers (one fixed number) leave security
    SMS in the shared outbox that this package's dispatcher passes also deliver."""
    return f"+4477009{secrets.randbelow(10**5):05d}"


async def eventually(check: Callable[[], Awaitable[T | None]], *, what: str, limit: float = 60.0) -> T:
    """Poll `check` until it returns something truthy (state, not time: `limit` only stops a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        found = await check()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.05)


async def drain(dispatcher: Dispatcher, until: Callable[[], Awaitable[Any]], *, what: str) -> Any:
    """Run dispatch passes until `until()` is truthy."""

    async def step() -> Any:
        await dispatcher.run_once()
        return await until()

    return await eventually(step, what=what)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(settings: Settings, engine: AsyncEngine, temporal_address: str) -> AsyncIterator[Stack]:
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    sandboxes = await start_venues(["mail", "twilio", "ops_webhook"])
    s = settings.model_copy(
        update={
            "sendgrid_host": sandboxes.urls["mail"],
            "twilio_url": sandboxes.urls["twilio"],
            "ops_alert_webhook_url": f"{sandboxes.urls['ops_webhook']}/services/T0/B0/ops",
            "public_base_url": api_url,
            "notification_dispatcher": False,
            "notification_poll_seconds": 0.05,
            "notification_lease_seconds": 0.5,
            "notification_max_attempts": 3,
            "notification_backoff_first_seconds": 0.05,
            "notification_backoff_max_seconds": 0.2,
            "notification_unknown_grace_seconds": 1.0,
            "notification_send_timeout_seconds": 2.0,
        }
    )
    app = create_app(
        s,
        temporal_address=temporal_address,
        rate_limits=RateLimits(
            anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000
        ),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", proxy_headers=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    stack = Stack(
        settings=s,
        engine=engine,
        api_url=api_url,
        mail_url=sandboxes.urls["mail"],
        twilio_url=sandboxes.urls["twilio"],
        hook_url=sandboxes.urls["ops_webhook"],
    )
    await stack.sandbox(
        stack.mail_url,
        "POST",
        "/_control/event_webhook",
        json={"url": f"{api_url}/api/v1/webhooks/sendgrid/events"},
    )
    try:
        yield stack
    finally:
        server.should_exit = True
        await serving
        await sandboxes.stop()

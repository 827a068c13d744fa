"""The GDPR test stack, started once per package in the session loop: the mail sink (SendGrid's protocol)
in-process, the real API over ASGI on the session's PostgreSQL and Temporal dev server, and one worker on
a task queue of this package running the GDPR sagas (workers/registry.py's activities).

Each test makes its own customers (fresh ids), so tests are independent of each other's order. The
five-year and link-lifetime timers run on the time-skipping server in test_retention.py.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.gdpr import GdprActivities
from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from providers.email import EmailSender
from sandbox.mail import create_app as create_mail_app
from sandbox.runner import serve
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.passwords import hash_password
from tests import totp_codes
from workers.registry import gdpr_activities
from workflows.gdpr import GdprExportWorkflow, RetentionWorkflow

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
PASSWORD = "Correct-Horse-9-battery"


@dataclass
class Stack:
    settings: Settings
    engine: AsyncEngine
    client: Client
    ledger: Ledger
    task_queue: str
    mail_url: str
    transport: httpx.ASGITransport

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=self.transport, base_url="http://test", timeout=30)

    async def mail_to(self, email: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.mail_url, timeout=30) as c:
            r = await c.get("/messages", params={"to": email})
            r.raise_for_status()
            result: list[dict[str, Any]] = r.json()
            return result


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(
    settings: Settings, engine: AsyncEngine, temporal_client: Client, temporal_address: str
) -> AsyncIterator[Stack]:
    mail_runner, mail_port = await serve(create_mail_app(settings.sendgrid_api_key), "127.0.0.1", 0)
    s = settings.model_copy(
        update={
            "sendgrid_host": f"http://127.0.0.1:{mail_port}",
            "gdpr_export_link_seconds": 3600.0,
        }
    )
    queue = f"test-gdpr-{uuid.uuid4()}"
    app = create_app(
        s,
        temporal_address=temporal_address,
        rate_limits=RateLimits(
            anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000
        ),
        email_sender=EmailSender.from_settings(s),
    )
    app.state.gdpr_task_queue = queue
    activities = GdprActivities(engine=engine, settings=s, email=EmailSender.from_settings(s))
    worker = Worker(
        temporal_client,
        task_queue=queue,
        workflows=[GdprExportWorkflow, RetentionWorkflow],
        activities=gdpr_activities(activities),
    )
    run = asyncio.create_task(worker.run())
    try:
        async with app.router.lifespan_context(app):
            yield Stack(
                settings=s,
                engine=engine,
                client=temporal_client,
                ledger=Ledger(engine, house_shards=4),
                task_queue=queue,
                mail_url=f"http://127.0.0.1:{mail_port}",
                transport=httpx.ASGITransport(app=app, client=("10.18.4.1", 40000)),
            )
    finally:
        await worker.shutdown()
        await asyncio.gather(run, return_exceptions=True)
        await mail_runner.cleanup()


@dataclass
class Person:
    id: uuid.UUID
    email: str
    token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(stack: Stack, *, roles: list[str] | None = None, prefix: str = "gdpr") -> Person:
    """A verified customer (or staff member) with a name and phone, logged in once over the API."""
    email = f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"
    user_id = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified, first_name, "
                "last_name, phone) VALUES (:id, :e, :p, 1, :r, true, 'Ada', 'Quartermaine', '+447700900123')"
            ),
            {"id": user_id, "e": email, "p": hash_password(PASSWORD), "r": roles or []},
        )
    person = Person(id=user_id, email=email, **await login(stack, email))
    if roles:
        async with stack.engine.begin() as conn:
            await totp_codes.enable_second_factor(conn, user_id)  # staff routes need it
    return person


async def login(stack: Stack, email: str, *, expect: int = 200) -> dict[str, str]:
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/auth/login",
            json={"email": email, "password": PASSWORD},
            headers={"X-Device-Id": uuid.uuid4().hex, "User-Agent": "gdpr-tests/1.0"},
        )
    assert r.status_code == expect, r.text
    body = r.json()
    return {"token": body.get("access_token", ""), "refresh_token": body.get("refresh_token", "")}


async def pay_in_and_out(stack: Stack, user_id: uuid.UUID, amount: str, *, out: str = "0") -> None:
    """Ledger postings as the payment sagas make them: a GBP deposit from the bank, then (optionally) a
    withdrawal of `out` back to it."""
    account = await stack.ledger.customer_account(user_id, "GBP")
    deposit = uuid.uuid4()
    await stack.ledger.post(
        Posting(
            reference_type="deposit",
            reference_id=deposit,
            step="credit",
            kind="deposit",
            legs=[
                Leg(account, "GBP", Decimal(amount)),
                Leg(House(HouseAccount.BANK_CASH), "GBP", -Decimal(amount)),
            ],
        )
    )
    if Decimal(out):
        await stack.ledger.post(
            Posting(
                reference_type="withdrawal",
                reference_id=uuid.uuid4(),
                step="complete",
                kind="withdrawal",
                legs=[
                    Leg(account, "GBP", -Decimal(out)),
                    Leg(House(HouseAccount.BANK_CASH), "GBP", Decimal(out)),
                ],
            )
        )


async def wait_for(predicate: Any, timeout: float = 60.0) -> Any:
    """Poll `predicate` until it returns something truthy (state, not time: the bound only ends a hang)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)

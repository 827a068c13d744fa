"""The KYC test stack, started once per package in the session loop: the sandbox KYC vendor (Sumsub's
protocol) and a mail sink as in-process aiohttp apps, the real API on a free port (so the vendor's signed
webhooks arrive over HTTP), and a worker on the KYC task queue built by `workers.registry.build`.

Each test makes its own customers (fresh ids) and scripts the vendor per customer, so tests are independent.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pyotp
import pytest
import pytest_asyncio
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from devstack.ports import free_port
from models.sealed import seal
from providers.email import EmailSender
from providers.kyc import KycVendorClient
from sandbox.kyc import STATE as KYC_STATE
from sandbox.kyc import KycVendorState
from sandbox.kyc import create_app as create_kyc_app
from sandbox.mail import create_app as create_mail_app
from sandbox.runner import serve
from services.passwords import hash_password
from temporal import task_queues
from tests import totp_codes
from workers.registry import Dependencies, build

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
PASSWORD = "Correct-Horse-9-battery"


@dataclass
class Stack:
    settings: Settings
    api_url: str
    vendor_url: str
    mail_url: str
    vendor: KycVendorState
    engine: AsyncEngine
    client: Client

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=30)

    async def control(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.vendor_url, timeout=30) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json()

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
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    mail_runner, mail_port = await serve(create_mail_app(settings.sendgrid_api_key), "127.0.0.1", 0)
    vendor_app = create_kyc_app(
        settings.kyc_app_token,
        secret_key=settings.kyc_secret_key,
        webhook_secret=settings.kyc_webhook_secret,
        webhook_url=f"{api_url}/api/v1/webhooks/kyc",
    )
    vendor_runner, vendor_port = await serve(vendor_app, "127.0.0.1", 0)
    s = settings.model_copy(
        update={
            "kyc_url": f"http://127.0.0.1:{vendor_port}",
            "sendgrid_host": f"http://127.0.0.1:{mail_port}",
            "kyc_vendor_poll_seconds": 1.0,
        }
    )
    app = create_app(
        s,
        temporal_address=temporal_address,
        rate_limits=RateLimits(
            anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000
        ),
        email_sender=EmailSender.from_settings(s),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", proxy_headers=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    deps = Dependencies(
        settings=s,
        engine=engine,
        adapters={},
        email=EmailSender.from_settings(s),
        kyc_vendor=KycVendorClient.from_settings(s, timeout=5.0),
    )
    spec = build(deps)[task_queues.KYC]
    worker = Worker(
        temporal_client,
        task_queue=task_queues.KYC,
        workflows=list(spec.workflows),
        activities=list(spec.activities),
    )
    run = asyncio.create_task(worker.run())
    try:
        yield Stack(
            settings=s,
            api_url=api_url,
            vendor_url=f"http://127.0.0.1:{vendor_port}",
            mail_url=f"http://127.0.0.1:{mail_port}",
            vendor=vendor_app[KYC_STATE],
            engine=engine,
            client=temporal_client,
        )
    finally:
        await worker.shutdown()
        await asyncio.gather(run, return_exceptions=True)
        server.should_exit = True
        await serving
        await deps.kyc_vendor.close()
        await vendor_runner.cleanup()
        await mail_runner.cleanup()


@pytest.fixture(autouse=True)
def clear_vendor_faults(stack: Stack) -> None:
    stack.vendor.faults.clear()
    stack.vendor.review_after = 0.2


@dataclass
class Person:
    id: uuid.UUID
    email: str
    token: str
    totp: pyotp.TOTP
    last_step: int = 0

    def headers(self, *, totp: bool = False) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        if totp:
            h["X-TOTP-Code"], self.last_step = totp_codes.next_code(self.totp, self.last_step)
        return h


async def make_user(stack: Stack, *, tier: int = 0, roles: list[str] | None = None) -> Person:
    email = f"kyc-{uuid.uuid4().hex[:12]}@example.com"
    user_id = uuid.uuid4()
    secret = pyotp.random_base32()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified, first_name, "
                "last_name) VALUES (:id, :e, :p, :t, :r, true, 'Ada', 'Quartermaine')"
            ),
            {
                "id": user_id,
                "e": email,
                "p": hash_password(PASSWORD),
                "t": tier,
                "r": roles or [],
            },
        )
    async with stack.http() as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
    async with stack.engine.begin() as conn:  # 2FA after the login (which would otherwise ask for a code)
        await conn.execute(
            text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
            {"s": seal(secret), "id": user_id},
        )
    return Person(id=user_id, email=email, token=r.json()["access_token"], totp=pyotp.TOTP(secret))


async def wait_for(predicate: Any, timeout: float = 90.0, interval: float = 0.1) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def mails_once(stack: Stack, email: str, subject_word: str) -> list[dict[str, Any]]:
    """Every mail to `email`, once one whose subject names `subject_word` arrived (mail follows the
    recorded state, so a test that just saw the state waits for it)."""

    async def arrived() -> list[dict[str, Any]] | None:
        mails = await stack.mail_to(email)
        return mails if any(subject_word in m["subject"] for m in mails) else None

    result: list[dict[str, Any]] = await wait_for(arrived)
    return result


async def submission(stack: Stack, submission_id: uuid.UUID | str) -> Any:
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(text("SELECT * FROM kyc_submissions WHERE id = :id"), {"id": submission_id})
        ).one()


async def wait_status(
    stack: Stack, submission_id: uuid.UUID | str, status: str, timeout: float = 90.0
) -> Any:
    async def reached() -> Any:
        row = await submission(stack, submission_id)
        return row if row.status == status else None

    return await wait_for(reached, timeout)


async def tier(stack: Stack, user_id: uuid.UUID) -> int:
    async with stack.engine.connect() as conn:
        return int(
            (
                await conn.execute(text("SELECT kyc_tier FROM users WHERE id = :u"), {"u": user_id})
            ).scalar_one()
        )


TIER1 = {
    "first_name": "Ada",
    "last_name": "Quartermaine",
    "date_of_birth": "1990-04-12",
    "nationality": "GB",
    "address": {"line1": "1 High Street", "city": "London", "postcode": "SW1A 1AA", "country": "GBR"},
    "phone": "020 7946 0018",
}
PASSPORT = b"\xff\xd8\xff\xe0 a passport scan"


async def upload_passport(stack: Stack, person: Person) -> dict[str, Any]:
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/kyc/tier2/documents",
            data={"id_doc_type": "PASSPORT", "country": "GB"},
            files={"file": ("passport.jpg", PASSPORT, "image/jpeg")},
            headers=person.headers(),
        )
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


async def submit_tier2(stack: Stack, person: Person) -> dict[str, Any]:
    async with stack.http() as c:
        r = await c.post("/api/v1/kyc/tier2/submit", headers=person.headers())
    assert r.status_code == 202, r.text
    result: dict[str, Any] = r.json()
    return result

"""The trading API end to end: the real app (in-process over ASGI, or under uvicorn for the WebSocket)
on the session's PostgreSQL and Temporal, sandbox Binance and Kraken over HTTP (started here), and a
Temporal worker running the real order saga on a fresh task queue per test (the production worker's set,
from `workers/registry.build`, with this test's clients injected).

Each test makes its own customers (verified, funded through real ledger postings, logged in through
the API), so tests don't depend on each other. After every test the ledger must still verify and sum to
zero per currency.

The adapters run without ccxt's throttle (production runs with it): each test loads two fresh adapter
sets (the worker's and the API's), so the throttle's spacing after every market load is paid per test;
with Binance's on the directory took 97 s instead of 65 s, and Kraken's (1 s per public call, 3 s per
private one) would add seconds more to each test. These tests assert the API's answers and the money,
never speed. The order saga under the production throttle is
`tests/market_data/test_order_saga_best_execution.py`; the adapters under it are tests/providers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pyotp
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from api.main import create_app
from config import Settings
from devstack.ports import free_port
from models.sealed import seal
from providers.email import EmailSender
from providers.exchanges.ccxt_adapter import CcxtAdapter
from sandbox.runner import RunningSandboxes, start_venues
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.passwords import hash_password
from services.router import Router, RouterParams
from temporal import task_queues
from tests import totp_codes
from tests.api.conftest import PASSWORD, TEST_LIMITS, TEST_POLICY, random_ip
from tests.orders.conftest import BTC_BOOKS
from tests.providers.conftest import VenueControl, exchange_config, quick_close
from workers.registry import Dependencies, build

BOOKS = BTC_BOOKS  # the same set-up books as the order-saga tests


@pytest_asyncio.fixture(scope="session")
async def trading_venues() -> AsyncIterator[RunningSandboxes]:
    running = await start_venues(["binance", "kraken"], seed=23)
    try:
        yield running
    finally:
        await running.stop()


@dataclass
class Customer:
    id: uuid.UUID
    email: str
    token: str
    totp: pyotp.TOTP | None = None
    last_step: int = 0

    def headers(self, *, totp: bool = False, key: str | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        if totp:
            h["X-TOTP-Code"] = self.next_code()
        if key:
            h["Idempotency-Key"] = key
        return h

    def next_code(self) -> str:
        """A code for a time step after the last one used (each step is accepted once, in order)."""
        assert self.totp is not None
        code, self.last_step = totp_codes.next_code(self.totp, self.last_step)
        return code


@dataclass
class Trading:
    app: FastAPI
    http: httpx.AsyncClient
    engine: AsyncEngine
    ledger: Ledger
    venues: dict[str, VenueControl]
    task_queue: str
    temporal: Client
    extra: dict[str, Any] = field(default_factory=dict)

    async def customer(
        self, *, gbp: str = "0", btc: str = "0", tier: int = 2, twofa: bool = False, verified: bool = True
    ) -> Customer:
        uid = uuid.uuid4()
        email = f"trade-{uid.hex[:12]}@example.com"
        secret = pyotp.random_base32()
        async with self.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, kyc_tier, email_verified) "
                    "VALUES (:i, :e, :p, :t, :v)"
                ),
                {"i": uid, "e": email, "p": hash_password(PASSWORD), "t": tier, "v": verified},
            )
        for currency, amount, source in (
            ("GBP", Decimal(gbp), HouseAccount.BANK_CASH),
            ("BTC", Decimal(btc), HouseAccount.provider("binance")),
        ):
            if amount:
                account = await self.ledger.customer_account(uid, currency)
                await self.ledger.post(
                    Posting(
                        reference_type="DEPOSIT",
                        reference_id=uuid.uuid4(),
                        step="credit",
                        legs=[Leg(House(source), currency, -amount), Leg(account, currency, amount)],
                    )
                )
        r = await self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        if twofa:  # enabled after logging in, so the login itself needs no code
            async with self.engine.begin() as c:
                await c.execute(
                    text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
                    {"s": seal(secret), "id": uid},
                )
        return Customer(uid, email, r.json()["access_token"], pyotp.TOTP(secret) if twofa else None)

    async def wait_order(self, customer: Customer, order_id: str, *, final: bool = True) -> dict[str, Any]:
        """Poll `GET /orders/{id}` until the order reaches a final status."""
        finals = {"FILLED", "PARTIALLY_FILLED", "CANCELLED", "EXPIRED", "REJECTED", "FAILED"}
        for _ in range(300):
            r = await self.http.get(f"/api/v1/orders/{order_id}", headers=customer.headers())
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] in finals:
                return body
            await asyncio.sleep(0.1)
        raise AssertionError(f"order {order_id} did not finish: {body}")

    async def order_count(self, user_id: uuid.UUID) -> int:
        async with self.engine.connect() as c:
            n = (
                await c.execute(text("SELECT count(*) FROM orders WHERE user_id = :u"), {"u": user_id})
            ).scalar()
        return int(n or 0)


@pytest_asyncio.fixture
async def trading(
    trading_venues: RunningSandboxes,
    venue_http: httpx.AsyncClient,
    temporal_client: Client,
    temporal_address: str,
    engine: AsyncEngine,
    settings: Settings,
    task_queue: str,
) -> AsyncIterator[Trading]:
    venues = {
        name: VenueControl(name, trading_venues.urls[name], venue_http) for name in ("binance", "kraken")
    }
    for name, control in venues.items():
        await control.post("walk", {"enabled": False})
        await venue_http.delete(f"{control.url}/_control/faults")
        await control.post("fees", {"taker": "0.001", "maker": "0.0008"})
        await control.book("BTC-GBP", BOOKS[name]["bids"], BOOKS[name]["asks"])
    # Two adapter sets, as in production: the worker's (execution) and the API's (market data, quotes).
    # ccxt's throttle off (module docstring).
    worker_adapters = {
        n: quick_close(
            CcxtAdapter(
                exchange_config(n, trading_venues.urls[n], lookup_attempts=5, enable_rate_limit=False)
            )
        )
        for n in venues
    }
    api_adapters = {
        n: quick_close(CcxtAdapter(exchange_config(n, trading_venues.urls[n], enable_rate_limit=False)))
        for n in venues
    }
    for a in [*worker_adapters.values(), *api_adapters.values()]:
        await a.load()
    ledger = Ledger(engine, house_shards=4)
    deps = Dependencies(
        settings=settings,
        engine=engine,
        adapters=dict(worker_adapters),
        router=Router(worker_adapters, params=RouterParams(deadline_s=3.0)),
        ledger=ledger,
        send_email=False,
    )
    spec = build(deps)[task_queues.ORDERS]
    worker = Worker(
        temporal_client, task_queue=task_queue, workflows=spec.workflows, activities=spec.activities
    )
    app = create_app(
        settings,
        temporal_address=temporal_address,
        rate_limits=TEST_LIMITS,
        auth_policy=TEST_POLICY,
        email_sender=EmailSender.from_settings(settings),
        adapters=api_adapters,
        orders_task_queue=task_queue,
    )
    async with worker, app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(random_ip(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as http:
            yield Trading(app, http, engine, ledger, venues, task_queue, temporal_client)
    for a in [*worker_adapters.values(), *api_adapters.values()]:
        await a.close()
    report = await ledger.verify()
    assert report.ok, report.first_problem
    assert all(t.total == 0 for t in await ledger.totals())


@pytest_asyncio.fixture
async def served(trading: Trading) -> AsyncIterator[str]:
    """The same app also served by uvicorn on a free port (its lifespan already runs): the base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            trading.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", proxy_headers=False
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving

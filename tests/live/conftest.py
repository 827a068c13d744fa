"""The live-updates stack, started once for the package: the real API (under uvicorn, for real WebSockets)
on the session's PostgreSQL and Temporal, the Binance and Kraken sandboxes (prices for the ticker and the
price alerts), and a Temporal worker running `PriceAlertsWorkflow` on a queue of this package's own.

Small limits so the tests can reach them: 3 sockets per customer, 3 price alerts per customer. Each test
makes its own customers (fresh ids) and sets the books it needs.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
import uvicorn
import websockets
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.price_alerts import PriceAlertActivities
from api.main import create_app
from config import Settings
from devstack.ports import free_port
from providers.email import EmailSender
from providers.exchanges.ccxt_adapter import CcxtAdapter
from sandbox.runner import start_venues
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.passwords import hash_password
from tests.api.conftest import PASSWORD, TEST_LIMITS, TEST_POLICY
from tests.providers.conftest import VenueControl, exchange_config, quick_close
from workflows.price_alerts import PriceAlertsWorkflow

MAX_SOCKETS = 3
MAX_ALERTS = 3


class StatementCounter:
    """Counts the SQL statements the API process sends through its pool, but for the notification
    dispatcher's (notify-core's, in the same process: it works the outbox tables, which the feed never
    reads)."""

    DISPATCHER_TABLES = ("notification_outbox", "notification_deliveries", "notification_preferences")

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    @property
    def count(self) -> int:
        return len(self.statements)

    def _seen(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if not any(t in statement for t in self.DISPATCHER_TABLES):
            self.statements.append(statement)


@dataclass
class Customer:
    id: uuid.UUID
    token: str

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Feed:
    """One authenticated WebSocket and everything it has received."""

    ws: Any
    seen: list[dict[str, Any]] = field(default_factory=list)

    async def until(self, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not check(self.seen):
                self.seen.append(json.loads(await self.ws.recv()))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.seen if m["type"] == kind]


@dataclass
class LiveStack:
    app: FastAPI
    url: str
    http: httpx.AsyncClient
    engine: AsyncEngine
    ledger: Ledger
    venues: dict[str, VenueControl]
    temporal: Client
    task_queue: str
    statements: StatementCounter

    async def customer(self, *, gbp: str = "0") -> Customer:
        uid = uuid.uuid4()
        email = f"live-{uid.hex[:12]}@example.com"
        async with self.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, kyc_tier, email_verified) "
                    "VALUES (:i, :e, :p, 2, true)"
                ),
                {"i": uid, "e": email, "p": hash_password(PASSWORD)},
            )
        if Decimal(gbp):
            await self.deposit(uid, gbp)
        r = await self.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return Customer(uid, r.json()["access_token"])

    async def deposit(self, user_id: uuid.UUID, gbp: str) -> None:
        account = await self.ledger.customer_account(user_id, "GBP")
        amount = Decimal(gbp)
        await self.ledger.post(
            Posting(
                reference_type="DEPOSIT",
                reference_id=uuid.uuid4(),
                step="credit",
                legs=[Leg(House(HouseAccount.BANK_CASH), "GBP", -amount), Leg(account, "GBP", amount)],
            )
        )

    async def connect(self, customer: Customer) -> Feed:
        """A socket that has sent its token (and may yet be refused)."""
        ws = await websockets.connect(f"ws://{self.url}/api/v1/ws")
        await ws.send(json.dumps({"type": "auth", "token": customer.token}))
        return Feed(ws)

    async def feed(self, customer: Customer) -> Feed:
        """A socket past authentication, with its welcome received."""
        feed = await self.connect(customer)
        await feed.until(lambda s: bool(s) and s[0]["type"] == "welcome")
        assert feed.seen[0] == {"type": "welcome", "user_id": str(customer.id)}, feed.seen[0]
        return feed

    async def set_btc_bid(self, bid: str) -> None:
        """Both venues quote BTC-GBP with this best bid (the ask 50 above it)."""
        ask = str(Decimal(bid) + 50)
        for control in self.venues.values():
            await control.book("BTC-GBP", [(bid, "1")], [(ask, "1")])


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def live(
    settings: Settings, engine: AsyncEngine, temporal_client: Client, venue_http: httpx.AsyncClient
) -> AsyncIterator[LiveStack]:
    venues = await start_venues(["binance", "kraken"], seed=31)
    controls = {n: VenueControl(n, venues.urls[n], venue_http) for n in ("binance", "kraken")}
    for control in controls.values():
        await control.post("walk", {"enabled": False})

    def adapter(name: str) -> CcxtAdapter:
        return quick_close(CcxtAdapter(exchange_config(name, venues.urls[name], enable_rate_limit=False)))

    api_adapters = {n: adapter(n) for n in controls}
    worker_adapters = {n: adapter(n) for n in controls}
    for a in [*api_adapters.values(), *worker_adapters.values()]:
        await a.load()
    s = settings.model_copy(
        update={"ws_max_connections_per_customer": MAX_SOCKETS, "price_alert_limit_per_customer": MAX_ALERTS}
    )
    app = create_app(
        s,
        rate_limits=TEST_LIMITS,
        auth_policy=TEST_POLICY,
        email_sender=EmailSender.from_settings(s),
        adapters=api_adapters,
    )
    task_queue = f"live-{uuid.uuid4()}"
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[PriceAlertsWorkflow],
        activities=[PriceAlertActivities(engine=engine, adapters=lambda: worker_adapters).check],
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", proxy_headers=False
        )
    )
    async with worker, app.router.lifespan_context(app):
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
                yield LiveStack(
                    app=app,
                    url=f"127.0.0.1:{port}",
                    http=http,
                    engine=engine,
                    ledger=Ledger(engine, house_shards=4),
                    venues=controls,
                    temporal=temporal_client,
                    task_queue=task_queue,
                    statements=StatementCounter(app.state.engine),
                )
        finally:
            server.should_exit = True
            await serving
    for a in [*api_adapters.values(), *worker_adapters.values()]:
        await a.close()
    await venues.stop()

"""Order-saga fixtures: real PostgreSQL, the session Temporal dev server, and sandbox venues over HTTP
(started here, separate from the provider tests' venues), with a worker per test on its own queue, built
by `workers/registry.build` (the production worker's set) with this test's clients injected.

The adapters here run without ccxt's throttle (production runs with it). Each test builds and loads a
fresh adapter pair, so the throttle's spacing is paid per test: with Binance's on the directory took
147 s instead of 114 s, mostly in the unknown-outcome tests, whose lookups go through it; Kraken's (1 s
per public call, 3 s per private one) would add about 4 s of market and fee loading to every test. These
tests assert what the saga does with money and venue outcomes, never how fast, and the throttle does
not change what a venue answers. The saga under the production throttle (adapters from settings, live
books, 30 concurrent orders) is `tests/market_data/test_order_saga_best_execution.py`; the adapter
contract under Binance's throttle is tests/providers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, Worker

from config import Settings
from models.order_flow import OrderRequest, OrderState
from providers.exchanges.ccxt_adapter import CcxtAdapter
from sandbox.runner import RunningSandboxes, start_venues
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.router import Router, RouterParams
from temporal import task_queues
from tests.providers.conftest import VenueControl, exchange_config, quick_close
from workers.registry import Dependencies, build
from workflows.orders import ID_REUSE_POLICY, OrderWorkflow, workflow_id

BTC_BOOKS = {
    # binance is cheaper to buy from; kraken pays more to sellers.
    "binance": {
        "bids": [("67900", "1"), ("67800", "2")],
        "asks": [("68000", "0.5"), ("68100", "2"), ("68600", "5")],
    },
    "kraken": {"bids": [("67950", "1"), ("67700", "3")], "asks": [("68050", "1"), ("68300", "3")]},
}


@pytest_asyncio.fixture(scope="session")
async def order_sandboxes() -> AsyncIterator[RunningSandboxes]:
    running = await start_venues(["binance", "kraken"], seed=11)
    try:
        yield running
    finally:
        await running.stop()


@dataclass
class OrderStack:
    client: Client
    task_queue: str
    engine: AsyncEngine
    ledger: Ledger
    venues: dict[str, VenueControl]
    adapters: dict[str, CcxtAdapter]
    router: Router
    settings: Settings
    started: list[str] = field(default_factory=list)  # workflow ids, replayed at teardown

    async def customer(self, gbp: str = "0", btc: str = "0", tier: int = 2) -> uuid.UUID:
        uid = uuid.uuid4()
        async with self.engine.begin() as c:
            await c.execute(
                text("INSERT INTO users (id, email, password_hash, kyc_tier) VALUES (:i, :e, 'x', :t)"),
                {"i": uid, "e": f"{uid}@orders.test", "t": tier},
            )
        for currency, amount, source in (
            ("GBP", Decimal(gbp), HouseAccount.BANK_CASH),
            ("BTC", Decimal(btc), HouseAccount.provider("binance")),
        ):
            account = await self.ledger.customer_account(uid, currency)
            if amount:
                await self.ledger.post(
                    Posting(
                        reference_type="DEPOSIT",
                        reference_id=uuid.uuid4(),
                        step="credit",
                        legs=[Leg(House(source), currency, -amount), Leg(account, currency, amount)],
                    )
                )
        return uid

    async def balance(self, user: uuid.UUID, currency: str) -> tuple[Decimal, Decimal, Decimal]:
        b = await self.ledger.balance(await self.ledger.customer_account(user, currency))
        return b.balance, b.available, b.reserved

    def request(self, user: uuid.UUID, **fields: Any) -> OrderRequest:
        defaults: dict[str, Any] = {
            "order_id": uuid.uuid4(),
            "user_id": user,
            "symbol": "BTC-GBP",
            "poll_interval_s": 0.2,
        }
        return OrderRequest(**{**defaults, **fields})

    async def start(
        self, req: OrderRequest, task_queue: str | None = None
    ) -> WorkflowHandle[Any, OrderState]:
        self.started.append(workflow_id(req.order_id))
        return await self.client.start_workflow(
            OrderWorkflow.run,
            req,
            id=workflow_id(req.order_id),
            task_queue=task_queue or self.task_queue,
            id_reuse_policy=ID_REUSE_POLICY,
        )

    async def run(self, req: OrderRequest) -> OrderState:
        handle = await self.start(req)
        return await handle.result()

    async def venue_orders(self, venue: str, order_id: uuid.UUID) -> list[dict[str, Any]]:
        """This order's orders at the venue (by the client order id prefix the adapter derives)."""
        prefix = order_id.hex[:24]
        return [
            o
            for o in await self.venues[venue].orders()
            if str(o.get("client_order_id", "")).startswith(prefix)
        ]

    async def order_row(self, order_id: uuid.UUID) -> dict[str, Any]:
        async with self.engine.connect() as c:
            row = (
                (await c.execute(text("SELECT * FROM orders WHERE id = :o"), {"o": order_id}))
                .mappings()
                .one()
            )
        return dict(row)


@pytest_asyncio.fixture
async def stack(
    order_sandboxes: RunningSandboxes,
    venue_http: httpx.AsyncClient,
    temporal_client: Client,
    engine: AsyncEngine,
    settings: Settings,
    task_queue: str,
) -> AsyncIterator[OrderStack]:
    venues = {
        name: VenueControl(name, order_sandboxes.urls[name], venue_http) for name in ("binance", "kraken")
    }
    for name, control in venues.items():
        # No reset between tests: a real venue never reuses order ids, and a reset sandbox would.
        await control.post("walk", {"enabled": False})
        await venue_http.delete(f"{control.url}/_control/faults")
        await control.post("fees", {"taker": "0.001", "maker": "0.0008"})
        await control.book("BTC-GBP", BTC_BOOKS[name]["bids"], BTC_BOOKS[name]["asks"])
    adapters = {
        name: quick_close(
            CcxtAdapter(
                exchange_config(name, order_sandboxes.urls[name], lookup_attempts=5, enable_rate_limit=False)
            )
        )
        for name in venues
    }  # throttle off: module docstring
    for a in adapters.values():
        await a.load()
    router = Router(adapters, params=RouterParams(deadline_s=3.0))
    ledger = Ledger(engine, house_shards=4)
    deps = Dependencies(
        settings=settings,
        engine=engine,
        adapters=dict(adapters),
        router=router,
        ledger=ledger,
        send_email=False,
    )
    spec = build(deps)[task_queues.ORDERS]
    worker = Worker(
        temporal_client, task_queue=task_queue, workflows=spec.workflows, activities=spec.activities
    )
    async with worker:
        stack = OrderStack(temporal_client, task_queue, engine, ledger, venues, adapters, router, settings)
        yield stack
    for a in adapters.values():
        await a.close()
    # Every history this test produced must replay on the current workflow code (determinism).
    replayer = Replayer(workflows=[OrderWorkflow], data_converter=pydantic_data_converter)
    for wid in stack.started:
        handle = temporal_client.get_workflow_handle(wid)
        desc = await handle.describe()
        if desc.status is not None and desc.status.name == "RUNNING":
            continue
        await replayer.replay_workflow(await handle.fetch_history())
    report = await ledger.verify()
    assert report.ok, report.first_problem
    totals = await ledger.totals()
    assert all(t.total == 0 for t in totals), totals


NewStack = Callable[..., Awaitable[OrderStack]]

"""The first-trade gates end to end: the real app over ASGI with the gates enforced, the session's
PostgreSQL and Temporal, sandbox Binance and Kraken, and one worker on a fresh task queue per test that
runs the real order saga and the cooling-off saga (the API starts the cooling-off on that queue).

The cooling-off here lasts one second on the dev server (the test waits on the gate's state, not on
time); the 24-hour timer itself runs on the time-skipping server in test_cooling_off.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.aml import AmlActivities
from activities.first_trade import FirstTradeActivities
from activities.orders import OrderActivities
from api.main import create_app
from config import Settings
from providers.email import EmailSender
from providers.exchanges.ccxt_adapter import CcxtAdapter
from sandbox.runner import RunningSandboxes
from services.ledger import Ledger
from services.router import Router, RouterParams
from tests.api.conftest import TEST_LIMITS, TEST_POLICY, random_ip
from tests.api_trading.conftest import BOOKS, Trading, trading_venues
from tests.providers.conftest import VenueControl, exchange_config, quick_close
from workflows.first_trade import CoolingOffWorkflow
from workflows.orders import OrderWorkflow

__all__ = ["trading_venues"]  # the session's sandbox venues, shared with tests/api_trading's fixture


@pytest.fixture(scope="session")
def settings(settings: Settings) -> Settings:
    """The session's settings with the gates enforced, as everywhere outside tests."""
    return settings.model_copy(
        update={"first_trade_gates_enforced": True, "first_trade_cooling_off_seconds": 1.0}
    )


@pytest_asyncio.fixture
async def gated(
    trading_venues: RunningSandboxes,
    venue_http: httpx.AsyncClient,
    temporal_client: Client,
    temporal_address: str,
    engine: AsyncEngine,
    settings: Settings,
    task_queue: str,
) -> AsyncIterator[Trading]:
    venues = {n: VenueControl(n, trading_venues.urls[n], venue_http) for n in ("binance", "kraken")}
    for name, control in venues.items():
        await control.post("walk", {"enabled": False})
        await venue_http.delete(f"{control.url}/_control/faults")
        await control.book("BTC-GBP", BOOKS[name]["bids"], BOOKS[name]["asks"])
    worker_adapters = {
        n: quick_close(CcxtAdapter(exchange_config(n, trading_venues.urls[n], enable_rate_limit=False)))
        for n in venues
    }
    api_adapters = {
        n: quick_close(CcxtAdapter(exchange_config(n, trading_venues.urls[n], enable_rate_limit=False)))
        for n in venues
    }
    for a in [*worker_adapters.values(), *api_adapters.values()]:
        await a.load()
    ledger = Ledger(engine, house_shards=4)
    orders = OrderActivities(
        engine=engine,
        ledger=ledger,
        router=Router(worker_adapters, params=RouterParams(deadline_s=3.0)),
        adapters=worker_adapters,
        settings=settings,
        email=None,
    )
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[OrderWorkflow, CoolingOffWorkflow],
        activities=[
            orders.accept, orders.quote, orders.reserve, orders.place, orders.settle, orders.mark,
            orders.venue_status, orders.cancel_at_venue, orders.resolve_placement, orders.verify_resolution,
            orders.notify, FirstTradeActivities(engine=engine).complete_cooling_off,
            AmlActivities(engine=engine, settings=settings).screen_trade,
        ],
    )  # fmt: skip
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

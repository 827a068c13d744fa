"""A fresh world per test: its own database, venues (Binance, Kraken, OTC) and bank, with the venues'
and bank's opening floats booked, and a worker running the reconciliation saga on its own task queue.

Reconciliation compares whole books with whole venues, so sharing either with another test would make
one test's movements another's drift: each test gets both fresh.
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
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.reconciliation import ReconciliationActivities
from config import Settings
from config.settings import DEV_SECRETS
from devstack import migrate
from devstack.postgres import EmbeddedPostgres
from models.assets import SCALES
from models.database import async_engine
from models.reconciliation import ReconcileInput, RunResult
from providers.bank import BankClient
from providers.exchanges.base import ExecutionAdapter
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from providers.exchanges.otc_adapter import OtcAdapter
from sandbox.bank import create_app as create_bank_app
from sandbox.runner import serve, start_venues
from services.ledger import Ledger
from services.reconciliation import BANK_SOURCE, book_float_funding
from workflows.reconciliation import ReconciliationWorkflow, reconciliation_workflow_id

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


@dataclass
class World:
    settings: Settings
    engine: AsyncEngine
    ledger: Ledger
    client: Client
    task_queue: str
    urls: dict[str, str]
    adapters: dict[str, ExecutionAdapter]

    async def reconcile(self) -> RunResult:
        run_id = uuid.uuid4()
        return await self.client.execute_workflow(
            ReconciliationWorkflow.run,
            ReconcileInput(run_id=run_id, trigger="test"),
            id=reconciliation_workflow_id(run_id),
            task_queue=self.task_queue,
        )

    async def control(self, venue: str, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.urls[venue], timeout=10) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json()


@pytest_asyncio.fixture
async def world(
    postgres: EmbeddedPostgres, settings: Settings, temporal_client: Client, task_queue: str
) -> AsyncIterator[World]:
    url = postgres.create_database(f"recon_{uuid.uuid4().hex[:12]}")
    await asyncio.to_thread(migrate.upgrade, url)
    engine = async_engine(url, pool_size=5, max_overflow=5)
    venues = await start_venues(["binance", "kraken", "otc"])
    bank_runner, bank_port = await serve(create_bank_app(DEV_SECRETS["bank_api_key"]), "127.0.0.1", 0)
    urls = {**venues.urls, "bank": f"http://127.0.0.1:{bank_port}"}
    s = settings.model_copy(
        update={
            "database_url": url,
            "bank_url": urls["bank"],
            "binance_url": urls["binance"],
            "kraken_url": urls["kraken"],
            "otc_url": urls["otc"],
            "crypto_provider": "binance",
            "crypto_deposit_provider": "kraken",
            "reconciliation_error_runs_to_alert": 2,
        }
    )
    adapters: dict[str, ExecutionAdapter] = {
        name: CcxtAdapter(
            ExchangeConfig(
                name=name, exchange_id=name, api_key=getattr(s, f"{name}_api_key"), enable_rate_limit=False,
                secret=getattr(s, f"{name}_secret"), base_url=urls[name],
            )
        )
        for name in ("binance", "kraken")
    }  # fmt: skip
    adapters["otc"] = OtcAdapter(name="otc", base_url=urls["otc"], api_key=s.otc_api_key)
    bank = BankClient.from_settings(s, timeout=5.0)
    ledger = Ledger(engine)
    # The opening floats: what each source holds is house money placed there.
    for name, adapter in adapters.items():
        for currency in SCALES:
            amount = (await adapter.balance(currency)).total
            if amount:
                await book_float_funding(
                    ledger, source=name, currency=currency, amount=amount, funding_id=uuid.uuid4()
                )
    acts = ReconciliationActivities(engine=engine, settings=s, bank=lambda: bank, adapters=lambda: adapters)
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ReconciliationWorkflow],
        activities=[
            acts.cut_off,
            acts.read_venue,
            acts.read_bank,
            acts.read_ledger,
            acts.read_fills,
            acts.record,
        ],
    )
    running = asyncio.create_task(worker.run())
    try:
        yield World(
            settings=s, engine=engine, ledger=ledger, client=temporal_client, task_queue=task_queue,
            urls=urls, adapters=adapters,
        )  # fmt: skip
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
        for adapter in adapters.values():
            await adapter.close()
        await bank.close()
        await venues.stop()
        await bank_runner.cleanup()
        await engine.dispose()


__all__ = ["BANK_SOURCE", "Decimal", "World"]

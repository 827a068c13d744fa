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
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.aml import AmlActivities
from activities.payments import PaymentActivities
from activities.reconciliation import ReconciliationActivities
from activities.treasury import TreasuryActivities
from config import Settings
from config.settings import DEV_SECRETS
from devstack import migrate
from devstack.postgres import EmbeddedPostgres
from models.assets import SCALES
from models.database import async_engine
from models.payments import WithdrawalInput
from models.reconciliation import ReconcileInput, RunResult
from providers.bank import BankClient
from providers.chain.readers import build_readers
from providers.exchanges.base import ExecutionAdapter
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from providers.exchanges.otc_adapter import OtcAdapter
from sandbox.bank import create_app as create_bank_app
from sandbox.chain import create_app as create_chain_app
from sandbox.control import STATE_KEY
from sandbox.runner import serve, start_venues
from services import payments
from services.ledger import Ledger
from services.reconciliation import BANK_SOURCE, book_float_funding
from workers.registry import treasury_activities
from workflows.float_monitor import FloatMonitorWorkflow
from workflows.reconciliation import ReconciliationWorkflow, reconciliation_workflow_id
from workflows.treasury import FloatTransferWorkflow
from workflows.withdrawals import WithdrawalWorkflow, withdrawal_workflow_id

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
    apps: dict[str, Any]
    bank: BankClient

    async def reconcile(self) -> RunResult:
        run_id = uuid.uuid4()
        return await self.client.execute_workflow(
            ReconciliationWorkflow.run,
            ReconcileInput(run_id=run_id, trigger="test"),
            id=reconciliation_workflow_id(run_id),
            task_queue=self.task_queue,
        )

    async def customer(self) -> uuid.UUID:
        user_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, kyc_tier, email_verified) "
                    "VALUES (:id, :e, 'x', 3, true)"
                ),
                {"id": user_id, "e": f"recon-{user_id.hex[:12]}@example.com"},
            )
        return user_id

    async def crypto_deposit(self, user_id: uuid.UUID, currency: str, amount: Decimal) -> str:
        """A customer's deposit as it really arrives: on the chain to their Kraken address, credited by the
        venue, then credited to them by our deposit service (what the deposit poller does). Its tx id."""
        # Minted by the venue itself (ccxt's Kraken deposit methods differ per asset).
        address = self.apps["kraken"][STATE_KEY].venue.deposit_address(currency, new=True)
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO crypto_deposit_addresses (id, user_id, provider, currency, address) "
                    "VALUES (:id, :u, 'kraken', :c, :a)"
                ),
                {"id": uuid.uuid4(), "u": user_id, "c": currency, "a": address},
            )
        dep = await self.control(
            "kraken", "POST", "/_control/deposits",
            json={"asset": currency, "amount": str(amount), "address": address, "confirmations": 6},
        )  # fmt: skip
        tx_id = str(dep.get("tx_id") or dep.get("txid"))
        await payments.credit_crypto_deposit(
            self.engine, self.ledger, provider="kraken", tx_id=tx_id, currency=currency, amount=amount,
            address=address, confirmations=6,
        )  # fmt: skip
        return tx_id

    async def withdraw(self, user_id: uuid.UUID, currency: str, amount: Decimal) -> uuid.UUID:
        """A crypto withdrawal through the real saga (started as the API starts it, on this world's queue)."""
        address = "bc1q" + uuid.uuid4().hex if currency == "BTC" else "0x" + uuid.uuid4().hex + "00000000"
        address_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO withdrawal_addresses (id, user_id, currency, address, usable_from) "
                    "VALUES (:id, :u, :c, :a, now() - interval '2 days')"
                ),
                {"id": address_id, "u": user_id, "c": currency, "a": address},
            )
        withdrawal_id = uuid.uuid4()
        s = self.settings

        async def start(accepted: payments.AcceptedWithdrawal) -> None:
            data = WithdrawalInput(
                withdrawal_id=withdrawal_id, user_id=user_id, currency=currency, amount=amount,
                fee=accepted.fee, notional_gbp=accepted.notional_gbp, destination=accepted.destination,
                provider=accepted.provider, approvals_required=accepted.approvals_required,
                approval_timeout_seconds=60, halt_poll_seconds=s.withdrawal_halt_poll_seconds,
                settle_poll_seconds=s.withdrawal_settle_poll_seconds,
                absence_checks=s.withdrawal_absence_checks,
                absence_interval_seconds=s.withdrawal_absence_interval_seconds,
                requested_at=datetime.now(UTC),
            )  # fmt: skip
            await self.client.start_workflow(
                WithdrawalWorkflow.run,
                data,
                id=withdrawal_workflow_id(withdrawal_id),
                task_queue=self.task_queue,
            )

        await payments.accept_withdrawal(
            self.engine, withdrawal_id=withdrawal_id, user_id=user_id, currency=currency, amount=amount,
            price_gbp=Decimal("100"), address_id=address_id, bank_account_id=None,
            policy=payments.WithdrawalPolicy(
                approval_threshold_gbp=s.withdrawal_approval_threshold_gbp,
                dual_approval_threshold_gbp=s.withdrawal_dual_approval_threshold_gbp, fees=s.withdrawal_fees,
            ),
            crypto_provider=s.crypto_provider, on_recorded=start,
        )  # fmt: skip
        return withdrawal_id

    async def withdrawal_status(self, withdrawal_id: uuid.UUID) -> str:
        async with self.engine.connect() as conn:
            return str(
                (
                    await conn.execute(
                        text("SELECT status FROM withdrawals WHERE id = :id"), {"id": withdrawal_id}
                    )
                ).scalar_one()
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
    chain_runner, chain_port = await serve(create_chain_app(), "127.0.0.1", 0)
    chain = f"http://127.0.0.1:{chain_port}"
    urls = {**venues.urls, "bank": f"http://127.0.0.1:{bank_port}", "chain": chain}
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
            "chain_btc_url": f"{chain}/btc/api",
            "chain_eth_url": f"{chain}/eth",
            "chain_bnb_url": f"{chain}/bnb",
            "withdrawal_halt_poll_seconds": 0.3,
            "withdrawal_settle_poll_seconds": 0.5,
            "withdrawal_absence_checks": 3,
            "withdrawal_absence_interval_seconds": 0.3,
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
    readers = build_readers({"BTC": s.chain_btc_url, "ETH": s.chain_eth_url, "BNB": s.chain_bnb_url})
    acts = ReconciliationActivities(
        engine=engine, settings=s, bank=lambda: bank, adapters=lambda: adapters, chains=lambda: readers
    )
    pay = PaymentActivities(
        engine=engine, ledger=ledger, settings=s, bank=lambda: bank, adapters=lambda: adapters, email=None
    )
    treasury = TreasuryActivities(engine=engine, settings=s, adapters=lambda: adapters, ledger=ledger)
    aml = AmlActivities(engine=engine, settings=s)
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[ReconciliationWorkflow, WithdrawalWorkflow, FloatTransferWorkflow, FloatMonitorWorkflow],
        activities=[
            acts.cut_off, acts.read_venue, acts.read_bank,
            acts.read_wallets, acts.read_ledger, acts.read_fills,
            acts.check_chain, acts.record,
            pay.reserve_withdrawal, pay.discard_withdrawal, pay.mark_withdrawal,
            pay.withdrawal_needs_attention,
            pay.judge_decision, pay.verify_proof, pay.currency_halted, pay.send_withdrawal,
            pay.settlement_status, pay.complete_withdrawal, pay.release_withdrawal, pay.notify_withdrawal,
            pay.check_float, *treasury_activities(treasury),
            aml.screen_withdrawal, aml.verify_decision,
        ],
    )  # fmt: skip
    running = asyncio.create_task(worker.run())
    try:
        yield World(
            settings=s, engine=engine, ledger=ledger, client=temporal_client, task_queue=task_queue,
            urls=urls, adapters=adapters, apps=venues.apps, bank=bank,
        )  # fmt: skip
    finally:
        await worker.shutdown()
        await asyncio.gather(running, return_exceptions=True)
        for adapter in adapters.values():
            await adapter.close()
        for reader in readers.values():
            await reader.close()
        await chain_runner.cleanup()
        await bank.close()
        await venues.stop()
        await bank_runner.cleanup()
        await engine.dispose()


__all__ = ["BANK_SOURCE", "Decimal", "World"]

"""A clean mixed session through the real sagas and sandboxes reconciles MATCHED for every currency: GBP
paid in at the bank, crypto deposited on-chain at Kraken, market orders settled by the order saga at
every venue (Binance, Kraken and the OTC desk), and a crypto withdrawal through Binance onto the chain
with its network fee."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from decimal import Decimal

from sqlalchemy import text
from temporalio.worker import Worker

from activities.aml import AmlActivities
from activities.orders import OrderActivities
from models.market import OrderType, Side
from models.order_flow import OrderRequest, OrderStatus
from models.payments import BankPayment
from models.reconciliation import RunStatus
from services import payments
from services.router import Router, RouterParams
from tests.reconciliation.conftest import World
from workflows.orders import OrderWorkflow


async def _gbp_deposit(world: World, user_id: uuid.UUID, amount: str) -> None:
    """A Faster Payment in at the bank (its balance moves), credited by our deposit service."""
    bank = world.bank
    ref = await bank.customer_reference(str(user_id), "Mixed Session")
    async with world.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO deposit_references (id, user_id, provider, reference, sort_code, "
                "account_number, account_name) VALUES (:id, :u, 'bank', :r, '040004', '12345678', 'Broker')"
            ),
            {"id": uuid.uuid4(), "u": user_id, "r": ref.reference},
        )
    sent = await world.control(
        "bank", "POST", "/_control/payments", json={"reference": ref.reference, "amount": amount}
    )
    await payments.credit_bank_deposit(
        world.engine,
        world.ledger,
        BankPayment(bank_tx_id=sent["bank_tx_id"], amount=Decimal(amount), reference=ref.reference),
    )


async def test_clean_mixed_session_reconciles_matched_for_every_currency(world: World) -> None:
    # One order saga worker per venue, each routing to that venue only, so every venue trades.
    a = world.adapters
    params = RouterParams(deadline_s=3.0, otc_threshold=Decimal("1000"))
    routers = {
        "binance": Router({"binance": a["binance"]}, params=params),
        "kraken": Router({"kraken": a["kraken"]}, params=params),
        "otc": Router({"binance": a["binance"]}, otc=a["otc"], params=params),  # above the threshold: OTC
    }
    async with contextlib.AsyncExitStack() as stack:
        for venue, router in routers.items():
            orders = OrderActivities(
                engine=world.engine, ledger=world.ledger, router=router, adapters=world.adapters,
                settings=world.settings, email=None,
            )  # fmt: skip
            await stack.enter_async_context(
                Worker(
                    world.client,
                    task_queue=f"{world.task_queue}-{venue}",
                    workflows=[OrderWorkflow],
                    activities=[
                        orders.accept,
                        orders.quote,
                        orders.reserve,
                        orders.place,
                        orders.settle,
                        orders.mark,
                        orders.venue_status,
                        orders.cancel_at_venue,
                        orders.resolve_placement,
                        orders.notify,
                        AmlActivities(engine=world.engine, settings=world.settings).screen_trade,
                    ],
                )  # fmt: skip
            )
        user = await world.customer()
        await _gbp_deposit(world, user, "60000.00")
        await world.crypto_deposit(user, "BTC", Decimal("0.3"))
        await world.crypto_deposit(user, "ETH", Decimal("2"))
        requests = [
            ("binance", OrderRequest(order_id=uuid.uuid4(), user_id=user, symbol="BTC-GBP", side=Side.BUY,
                                     type=OrderType.MARKET, amount=Decimal("0.005"))),
            ("kraken", OrderRequest(order_id=uuid.uuid4(), user_id=user, symbol="ETH-GBP", side=Side.SELL,
                                    type=OrderType.MARKET, amount=Decimal("0.5"))),
            ("binance", OrderRequest(order_id=uuid.uuid4(), user_id=user, symbol="BNB-GBP", side=Side.BUY,
                                     type=OrderType.MARKET, amount=Decimal("2"))),
            ("otc", OrderRequest(order_id=uuid.uuid4(), user_id=user, symbol="BTC-GBP", side=Side.BUY,
                                 type=OrderType.MARKET, amount=Decimal("0.05"))),
        ]  # fmt: skip
        results = await asyncio.gather(
            *(
                world.client.execute_workflow(
                    OrderWorkflow.run, r, id=f"order-{r.order_id}", task_queue=f"{world.task_queue}-{venue}"
                )
                for venue, r in requests
            )
        )
        assert [r.status for r in results] == [OrderStatus.FILLED] * len(requests), results
    crypto_w = await world.withdraw(user, "BTC", Decimal("0.1"))
    for _ in range(150):
        if await world.withdrawal_status(crypto_w) == "COMPLETED":
            break
        await asyncio.sleep(0.2)
    assert await world.withdrawal_status(crypto_w) == "COMPLETED"
    async with world.engine.connect() as conn:
        used = {r[0] for r in (await conn.execute(text("SELECT routed_to_provider FROM orders"))).all()}
    assert used == {"binance", "kraken", "otc"}  # every venue traded
    result = await world.reconcile()
    assert {c.currency: c.status for c in result.currencies} == dict.fromkeys(
        ("GBP", "BTC", "ETH", "BNB"), RunStatus.MATCHED
    ), result.currencies

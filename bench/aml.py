"""AML monitoring's cost: withdrawals through the saga with every rule on vs every rule off, same run,
and one scheduled sweep of the window rules over 1,000,000 transactions.

Data (COPY): 20,000 customers and 1,000,000 transactions over the seven days before the run - 400,000
credited bank deposits (two payer accounts per customer), 200,000 completed withdrawals and 400,000
trades (two per order, buys and sells) - amounts small enough that no customer reaches a block.

Saga: `WithdrawalWorkflow` end to end (reserve, AML screening, send through the sandbox bank in this
process, learn the outcome by lookup, complete) for 60 of those customers, funded in the ledger, at
concurrency 10. "On" runs with the seed rule set live (every rule enabled: one features query over the
customer's history per withdrawal); "off" with a live version whose rules are all disabled (the same
screening activity, no features query). The batches alternate, on/off/on/off, each counted once.

Headline (`bench/results/aml.json`): withdrawals/s with rules on ÷ with rules off (aim ≥ 0.8); the
sweep's seconds in `extra`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from bench.common import print_table, summary, throwaway_postgres, throwaway_temporal, write_result
from config import Settings
from config.settings import DEV_SECRETS
from models.aml import RuleVersionMode
from models.database import async_engine
from models.payments import Destination, WithdrawalInput, WithdrawalStatus, withdrawal_workflow_id
from providers.bank import BankClient
from sandbox.bank import STATE as BANK_STATE
from sandbox.bank import create_app as create_bank_app
from sandbox.runner import serve
from services.aml import versions
from services.aml.rules import load_file, seed_files
from services.aml.sweep import sweep
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from temporal import task_queues
from workers.registry import Dependencies, build
from workflows.withdrawals import WithdrawalWorkflow

CUSTOMERS = 20_000
DEPOSITS = 400_000
WITHDRAWALS = 200_000
TRADES = 400_000  # two per order
DAYS = 7
FUNDED = 60
CONCURRENCY = 10
PER_BATCH = 120
QUEUE = "bench-aml"


def _uid(i: int) -> uuid.UUID:
    return uuid.UUID(int=(0xA3A << 116) | i)


def _copy_history(url: str, now: datetime) -> float:
    """COPY the customers and their 1,000,000 transactions; the seconds it took."""
    rnd = random.Random(16)
    span = DAYS * 86_400 - 3_600  # the newest an hour before the run
    start = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn, conn.cursor() as cur:
        with cur.copy("COPY users (id, email, password_hash, kyc_tier) FROM STDIN") as cp:
            for i in range(CUSTOMERS):
                cp.write_row((_uid(i), f"aml{i}@bench.test", "x", 3))

        def at() -> datetime:
            return now - timedelta(seconds=3_600 + rnd.random() * span)

        with cur.copy(
            "COPY deposits (id, user_id, currency, amount, payment_method, provider, provider_tx_id, status, "
            "details, created_at) FROM STDIN"
        ) as cp:
            for i in range(DEPOSITS):
                u = i % CUSTOMERS
                payer = {"payer_sort_code": "040004", "payer_account_number": f"{u:06d}{i % 2:02d}"}
                cp.write_row(
                    (uuid.uuid4(), _uid(u), "GBP", Decimal(rnd.randint(10, 400)), "BANK_TRANSFER", "bank",
                     f"bench-{i}", "CONFIRMED", json.dumps(payer), at())
                )  # fmt: skip
        with cur.copy(
            "COPY withdrawals (id, user_id, currency, amount, fee, status, notional_gbp, destination_type, "
            "created_at) FROM STDIN"
        ) as cp:
            for i in range(WITHDRAWALS):
                amount = Decimal(rnd.randint(10, 300))
                cp.write_row(
                    (uuid.uuid4(), _uid(i % CUSTOMERS), "GBP", amount, Decimal("0.5"), "COMPLETED", amount,
                     "bank", at())
                )  # fmt: skip
        orders = TRADES // 2
        order_ids = [uuid.uuid4() for _ in range(orders)]
        with cur.copy(
            "COPY orders (id, user_id, symbol, side, type, status, amount, created_at) FROM STDIN"
        ) as cp:
            for i, oid in enumerate(order_ids):
                cp.write_row(
                    (oid, _uid(i % CUSTOMERS), "BTC-GBP", "BUY" if i % 2 else "SELL", "MARKET", "FILLED",
                     Decimal("0.002"), at())
                )  # fmt: skip
        with cur.copy(
            "COPY trades (id, order_id, user_id, symbol, side, amount, price, fee, fee_currency, provider, "
            "executed_at) FROM STDIN"
        ) as cp:
            for i in range(TRADES):
                o = i // 2
                cp.write_row(
                    (uuid.uuid4(), order_ids[o], _uid(o % CUSTOMERS), "BTC-GBP", "BUY" if o % 2 else "SELL",
                     Decimal("0.001"), Decimal(50_000), Decimal(0), "GBP", "binance", at())
                )  # fmt: skip
        conn.commit()
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - start


async def _fund(engine: AsyncEngine, ledger: Ledger) -> list[uuid.UUID]:
    """The first customers with £90,000 each in the ledger (they withdraw in the saga runs)."""
    users = [_uid(i) for i in range(FUNDED)]
    for uid in users:
        acc = await ledger.customer_account(uid, "GBP")
        await ledger.post(
            Posting(
                reference_type="DEPOSIT",
                reference_id=uuid.uuid4(),
                step="credit",
                legs=[
                    Leg(House(HouseAccount.BANK_CASH), "GBP", Decimal("-90000")),
                    Leg(acc, "GBP", Decimal("90000")),
                ],
            )
        )
    return users


async def _withdraw(engine: AsyncEngine, client: Client, user: uuid.UUID) -> tuple[bool, float]:
    wid = uuid.uuid4()
    amount, fee = Decimal("10.00"), Decimal("0.50")
    async with engine.begin() as conn:  # what the API's request step writes before starting the saga
        await conn.execute(
            text(
                "INSERT INTO withdrawals (id, user_id, currency, amount, fee, status, notional_gbp, "
                "destination_type) VALUES (:id, :u, 'GBP', :a, :f, 'PENDING', :a, 'bank')"
            ),
            {"id": wid, "u": user, "a": amount, "f": fee},
        )
    w = WithdrawalInput(
        withdrawal_id=wid, user_id=user, currency="GBP", amount=amount, fee=fee, notional_gbp=amount,
        destination=Destination(
            kind="bank", sort_code="040004", account_number="12345678", holder_name="A Customer"
        ),
        provider="bank", settle_poll_seconds=0.05, requested_at=datetime.now(UTC),
    )  # fmt: skip
    t = time.perf_counter()
    state = await client.execute_workflow(
        WithdrawalWorkflow.run, w, id=withdrawal_workflow_id(wid), task_queue=QUEUE
    )
    return state.status == WithdrawalStatus.COMPLETED.value, (time.perf_counter() - t) * 1000


async def _batch(
    engine: AsyncEngine, client: Client, users: list[uuid.UUID]
) -> tuple[float, list[float], int]:
    """PER_BATCH withdrawals at CONCURRENCY: (withdrawals/s, latencies, completed)."""
    todo = list(range(PER_BATCH))
    latencies: list[float] = []
    done = 0

    async def worker() -> None:
        nonlocal done
        while todo:
            i = todo.pop()
            ok, ms = await _withdraw(engine, client, users[i % len(users)])
            latencies.append(ms)
            done += ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return PER_BATCH / (time.perf_counter() - start), latencies, done


async def _switch(engine: AsyncEngine, label: str) -> None:
    async with engine.begin() as conn:
        await versions.publish(conn, label)


async def _run(url: str, client: Client) -> None:
    now = datetime.now(UTC)
    copy_s = await asyncio.to_thread(_copy_history, url, now)
    engine = async_engine(url, pool_size=20, max_overflow=10)
    seed = load_file(seed_files()[0])

    t = time.perf_counter()
    swept = await sweep(engine, now)
    sweep_s = time.perf_counter() - t

    # Two more live versions to switch between: every rule on (the seed's rules) and every rule off.
    on = seed.model_copy(update={"version": "bench-on-1", "mode": RuleVersionMode.LIVE})
    off = seed.model_copy(
        update={
            "version": "bench-off-1",
            "mode": RuleVersionMode.LIVE,
            "rules": [r.model_copy(update={"enabled": False}) for r in seed.rules],
        }
    )
    async with engine.begin() as conn:
        for rs in (on, off):
            await versions.create_draft(conn, rs)

    bank_app = create_bank_app(DEV_SECRETS["bank_api_key"], webhook_url="http://127.0.0.1:9/unreachable")
    bank_app[BANK_STATE].settle_after = 0.0
    bank_runner, bank_port = await serve(bank_app, "127.0.0.1", 0)
    settings = Settings(
        environment="test",
        database_url=url,
        bank_url=f"http://127.0.0.1:{bank_port}",
        market_data_streams=False,
    )
    bank = BankClient.from_settings(settings)
    ledger = Ledger(engine)
    users = await _fund(engine, ledger)
    spec = build(
        Dependencies(
            settings=settings, engine=engine, adapters={}, bank=bank, ledger=ledger, send_email=False
        )
    )[task_queues.PAYMENTS]
    results: dict[str, list[tuple[float, list[float], int]]] = {"on": [], "off": []}
    try:
        async with Worker(
            client, task_queue=QUEUE, workflows=list(spec.workflows), activities=list(spec.activities)
        ):
            await _batch(engine, client, users)  # warm-up (seed rules live), not counted
            for round_ in range(2):
                for mode, label in (("on", on.version), ("off", off.version)):
                    name = label if round_ == 0 else f"{label[:-2]}-{round_ + 1}"
                    if round_:
                        rs = on if mode == "on" else off
                        async with engine.begin() as conn:
                            await versions.create_draft(conn, rs.model_copy(update={"version": name}))
                    await _switch(engine, name)
                    results[mode].append(await _batch(engine, client, users))
    finally:
        await bank.close()
        await bank_runner.cleanup()
        await engine.dispose()

    rate = {m: sum(r[0] for r in rs) / len(rs) for m, rs in results.items()}
    lat = {m: [x for r in rs for x in r[1]] for m, rs in results.items()}
    completed = {m: sum(r[2] for r in rs) for m, rs in results.items()}
    print_table(
        f"aml: {DEPOSITS + WITHDRAWALS + TRADES:,} transactions of {CUSTOMERS:,} customers "
        f"(COPY {copy_s:.1f} s); withdrawals at concurrency {CONCURRENCY}",
        ["rules", "withdrawals/s", "p50 ms", "p99 ms", "completed"],
        [
            [
                m,
                f"{rate[m]:.2f}",
                summary(lat[m])["p50_ms"],
                summary(lat[m])["p99_ms"],
                f"{completed[m]}/{2 * PER_BATCH}",
            ]
            for m in ("on", "off")
        ],
    )
    print(f"sweep over {DEPOSITS + WITHDRAWALS + TRADES:,} transactions: {sweep_s:.2f} s "
          f"({swept.customers:,} customers active, {swept.alerts:,} alerts)")  # fmt: skip
    extra: dict[str, Any] = {
        "withdrawals_per_s": {m: round(rate[m], 3) for m in rate},
        "latency_ms": {m: summary(lat[m]) for m in lat},
        "completed": completed,
        "sweep_s": round(sweep_s, 3),
        "sweep_customers": swept.customers,
        "sweep_alerts": swept.alerts,
        "transactions": DEPOSITS + WITHDRAWALS + TRADES,
        "customers": CUSTOMERS,
        "concurrency": CONCURRENCY,
    }
    write_result(
        "aml",
        metric="withdrawals/s rules on / rules off",
        value=rate["on"],
        reference=rate["off"],
        extra=extra,
    )


async def _main() -> None:
    with throwaway_postgres("bench_aml") as (_, url):
        async with throwaway_temporal() as env:
            await _run(url, env.client)


def main() -> None:
    asyncio.run(_main())

"""One reconciliation run's database work at scale vs reading the books once.

Data: 10,000 customers, 1,000,000 ledger entries (500,000 balanced two-leg postings between a customer
and `provider:binance`), 50,000 `provider_fills` and the 50,000 venue trades that match them. Timed:
what a run does after the sources have answered - the books as of the cut-off (`ledger_at`), the
in-flight items (`in_flight`), matching every venue trade with its fill and marking it reconciled
(`match_fills`) and recording one row per currency with the breaker (`record_run`). The venues', bank's
and chain's network reads are not in it (they are a few HTTP calls per source, independent of the size
of the books; the 50,000 trades are built in memory as `fetch_my_trades` would return them).

Reference, same server, same data: one aggregate of account balances by currency plus one sequential
scan of the entries. Headline (`bench/results/recon.json`): run seconds ÷ reference seconds (aim ≤ 3).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text

from bench.common import print_table, throwaway_postgres, write_result
from models.database import async_engine
from models.reconciliation import LedgerRead, RecordInput, SourceRead
from services import reconciliation as recon

CUSTOMERS = 10_000
ENTRIES = 1_000_000
FILLS = 50_000
CURRENCIES = ("GBP", "BTC", "ETH", "BNB")


async def _setup(url: str) -> list[recon.VenueTrade]:
    engine = async_engine(url)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash) SELECT md5('u' || i)::uuid, "
                "'bench' || i || '@example.com', 'x' FROM generate_series(1, :n) i"
            ),
            {"n": CUSTOMERS},
        )
        await conn.execute(
            text(
                "INSERT INTO accounts (id, kind, user_id, currency) SELECT md5('a' || i)::uuid, "
                "'customer', md5('u' || i)::uuid, (ARRAY['GBP','BTC','ETH','BNB'])[1 + i % 4] "
                "FROM generate_series(1, :n) i"
            ),
            {"n": CUSTOMERS},
        )
        await conn.execute(
            text(
                "INSERT INTO accounts (id, kind, code, currency) SELECT md5('h' || c)::uuid, 'house', "
                "'provider:binance', c FROM unnest(ARRAY['GBP','BTC','ETH','BNB']) c"
            )
        )
        postings = ENTRIES // 2
        await conn.execute(
            text(
                "INSERT INTO ledger_transactions (id, idempotency_key, request_hash, kind, reference_type, "
                "reference_id, created_at) SELECT md5('t' || i)::uuid, 'bench:' || i, md5('t' || i), "
                "'bench', 'bench', md5('t' || i)::uuid, now() - interval '1 day' "
                "FROM generate_series(1, :n) i"
            ),
            {"n": postings},
        )
        # Each posting: customer (i mod CUSTOMERS) +1 unit, the house account of its currency -1 unit.
        await conn.execute(
            text(
                "INSERT INTO ledger_entries (id, transaction_id, account_id, seq, currency, amount, "
                "balance_after, reference_type, reference_id, hash, created_at) "
                "SELECT md5('e' || i || s)::uuid, md5('t' || i)::uuid, "
                "CASE WHEN s = 0 THEN md5('a' || (1 + i % :c))::uuid ELSE md5('h' || cur)::uuid END, "
                "CASE WHEN s = 0 THEN 1 + i / :c ELSE i END, cur, "
                "CASE WHEN s = 0 THEN 0.01 ELSE -0.01 END, 0, "
                "'bench', md5('t' || i)::uuid, md5('e' || i || s) || md5('f' || i || s), "
                "now() - interval '1 day' FROM generate_series(1, :n) i, "
                "LATERAL (SELECT (ARRAY['GBP','BTC','ETH','BNB'])[1 + (1 + i % :c) % 4] AS cur) c, "
                "generate_series(0, 1) s"
            ),
            {"n": postings, "c": CUSTOMERS},
        )
        await conn.execute(
            text(
                "INSERT INTO provider_fills (id, provider, provider_order_id, symbol, side, amount, price, "
                "quote_amount, fee, status, executed_at) SELECT md5('p' || i)::uuid, 'binance', i::text, "
                "'BTC-GBP', 'BUY', 0.001, 50000, 50, 0, 'FILLED', now() - interval '1 hour' "
                "FROM generate_series(1, :n) i"
            ),
            {"n": FILLS},
        )
        # Balances as the ledger keeps them: the sum of each account's entries.
        await conn.execute(
            text(
                "UPDATE accounts a SET balance = t.s, available_balance = t.s FROM (SELECT account_id, "
                "sum(amount) AS s FROM ledger_entries GROUP BY 1) t WHERE a.id = t.account_id"
            )
        )
        await conn.execute(text("ANALYZE"))
    await engine.dispose()
    return [
        recon.VenueTrade(
            venue="binance",
            trade_id=f"t{i}",
            order_id=str(i),
            symbol="BTC-GBP",
            side="buy",
            amount=Decimal("0.001"),
            cost=Decimal("50"),
            fee=Decimal(0),
            fee_currency="BTC",
        )  # fmt: skip
        for i in range(1, FILLS + 1)
    ]


async def _run(url: str, trades: list[recon.VenueTrade]) -> tuple[float, dict[str, float], int]:
    engine = async_engine(url)
    cut_off = datetime.now(UTC)
    steps: dict[str, float] = {}
    start = time.perf_counter()
    t = time.perf_counter()
    ledger, flight = await asyncio.gather(
        recon.ledger_at(engine, cut_off),
        recon.in_flight(engine, cut_off=cut_off, trades=trades, venue_deposits=[]),
    )
    steps["ledger_at + in_flight (parallel)"] = time.perf_counter() - t
    t = time.perf_counter()
    fills = await recon.match_fills(
        engine, trades=trades, venues=["binance"], cut_off=cut_off, in_flight_orders=set()
    )
    steps["match_fills"] = time.perf_counter() - t
    t = time.perf_counter()
    assert isinstance(ledger, LedgerRead)
    provider = {c: ledger.assets.get("binance", {}).get(c, Decimal(0)) for c in CURRENCIES}
    await recon.record_run(
        engine,
        RecordInput(
            run_id=uuid.uuid4(),
            cut_off=cut_off,
            sources=[SourceRead(source="binance", balances=provider)],
            ledger=ledger,
            in_flight=flight,
            fills=fills,
        ),  # fmt: skip
        recon.Policy(tolerances=dict.fromkeys(CURRENCIES, Decimal("0.01"))),
    )
    steps["record_run"] = time.perf_counter() - t
    elapsed = time.perf_counter() - start
    await engine.dispose()
    return elapsed, steps, fills.matched


async def _reference(url: str) -> float:
    engine = async_engine(url)
    start = time.perf_counter()
    async with engine.connect() as conn:
        await conn.execute(text("SELECT currency, sum(balance) FROM accounts GROUP BY currency"))
        await conn.execute(text("SELECT count(*), sum(amount) FROM ledger_entries"))
    elapsed = time.perf_counter() - start
    await engine.dispose()
    return elapsed


def main() -> None:
    with throwaway_postgres("bench") as (_, url):
        t = time.perf_counter()
        trades = asyncio.run(_setup(url))
        setup_s = time.perf_counter() - t
        asyncio.run(_reference(url))  # warm the cache for both alike
        reference = min(asyncio.run(_reference(url)) for _ in range(3))
        run_s, steps, matched = asyncio.run(_run(url, trades))
    print_table(
        f"recon: {CUSTOMERS} customers, {ENTRIES} entries, {FILLS} fills (setup {setup_s:.1f} s)",
        ["step", "seconds"],
        [[k, f"{v:.3f}"] for k, v in steps.items()]
        + [["run", f"{run_s:.3f}"], ["reference", f"{reference:.3f}"]],
    )
    write_result(
        "recon",
        metric="run seconds / reference seconds",
        value=run_s,
        reference=reference,
        extra={"steps_s": {k: round(v, 3) for k, v in steps.items()}, "fills_matched": matched,
               "customers": CUSTOMERS, "entries": ENTRIES, "fills": FILLS},
    )  # fmt: skip

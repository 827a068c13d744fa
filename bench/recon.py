"""One full reconciliation run at scale vs reading the books once.

Data: 10,000 customers, 1,000,000 ledger entries (500,000 balanced two-leg postings between a customer
and `provider:binance`), 50,000 `provider_fills` and the 50,000 venue trades that match them. Timed: one
run end to end as `ReconciliationWorkflow` arranges it, each step the very service calls its activity
makes once the outside parties have answered - the cut-off (`last_cut_off`); side by side the books as of
the cut-off (`ledger_at`), the trade step (`explain_and_match`: float transfers, in-flight items and the
matching of every venue trade with its fill, marked reconciled), the chain items (`chain_items`) and the
venue's balance rewound to the cut-off (`balances_at_cut_off`); then the record with the circuit breaker
(`record_run`). The proof of liabilities is a daily job of its own, not part of a run. Not in it: the
network reads themselves (a few HTTP calls per source behind each venue's throttle - Kraken's is one
request a second - whatever the size of the books); the 50,000 trades are built in memory as
`providers/exchanges/trades.py` returns them.

Reference, same server, same data: one aggregate of account balances by currency plus one sequential
scan of the entries. Headline (`bench/results/recon.json`): run seconds ÷ reference seconds (aim ≤ 3).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import print_table, throwaway_postgres, write_result
from models.assets import CRYPTO
from models.database import async_engine
from models.reconciliation import ChainRead, FillsAndFlight, RecordInput, RunResult, SourceRead
from services import reconciliation as recon
from services import treasury

CUSTOMERS = 10_000
ENTRIES = 1_000_000
FILLS = 50_000
CURRENCIES = ("GBP", "BTC", "ETH", "BNB")
T = TypeVar("T")


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
    # Steady state, as autovacuum and the checkpointer leave a live database: hint bits and visibility
    # set, statistics fresh, the load's dirty pages written (else the first reader pays for the load).
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await auto.execute(text("VACUUM ANALYZE"))
        await auto.execute(text("CHECKPOINT"))
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


async def _warm(engine: AsyncEngine, connections: int) -> None:
    """Open the pool's connections before timing, as a long-running worker's pool already has them."""

    async def hold(started: asyncio.Event, release: asyncio.Event) -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            started.set()
            await release.wait()

    release = asyncio.Event()
    events = [asyncio.Event() for _ in range(connections)]
    tasks = [asyncio.create_task(hold(e, release)) for e in events]
    for e in events:
        await e.wait()
    release.set()
    await asyncio.gather(*tasks)


async def _timed(steps: dict[str, float], name: str, work: Awaitable[T]) -> T:
    t = time.perf_counter()
    out = await work
    steps[name] = time.perf_counter() - t
    return out


async def _run(url: str, trades: list[recon.VenueTrade]) -> tuple[float, dict[str, float], RunResult, int]:
    """One run as the workflow runs it, every step the activity's own service calls: the cut-off; then
    side by side the books as of the cut-off, the trade step (in-flight items and fill matching), the chain
    items, and the venue's balance rewound to the cut-off; then the record with the breaker."""
    engine = async_engine(url)
    async with engine.connect() as conn:  # what the venue answers (its balance now): the books agree
        rows = (
            await conn.execute(
                text("SELECT currency, -balance FROM accounts WHERE code = 'provider:binance'")
            )
        ).all()
    venue_now = {r[0]: r[1] for r in rows}
    await _warm(engine, 6)
    steps: dict[str, float] = {}
    start = time.perf_counter()
    since = await _timed(steps, "cut_off", recon.last_cut_off(engine))
    cut_off = datetime.now(UTC)
    cut_ms = int(cut_off.timestamp() * 1000)

    async def read_fills() -> FillsAndFlight:
        upto = [t for t in trades if t.at_or_before(cut_ms)]
        transfers = await treasury.transfers_in_flight(engine)
        return await recon.explain_and_match(
            engine, cut_off=cut_off, trades=upto, venues=["binance"], transfers=transfers
        )

    async def check_chain() -> ChainRead:
        first = (since or cut_off - timedelta(days=1)) - timedelta(days=1)
        items = await recon.chain_items(engine, since=first, currencies=sorted(CRYPTO))
        return ChainRead(checked=len(items))  # none here: the chain's answers are network reads

    async def read_venue() -> SourceRead:
        after = [t for t in trades if not t.at_or_before(cut_ms)]
        return SourceRead(source="binance", balances=recon.balances_at_cut_off(venue_now, after))

    ledger, fills, chain, venue = await asyncio.gather(
        _timed(steps, "read_ledger (ledger_at)", recon.ledger_at(engine, cut_off)),
        _timed(steps, "read_fills (in_flight + match_fills)", read_fills()),
        _timed(steps, "check_chain (chain_items)", check_chain()),
        _timed(steps, "read_venue (rewind to cut-off)", read_venue()),
    )
    result = await _timed(
        steps,
        "record (record_run)",
        recon.record_run(
            engine,
            RecordInput(
                run_id=uuid.uuid4(), cut_off=cut_off, sources=[venue], ledger=ledger,
                in_flight=fills.in_flight, fills=fills.fills, chain=chain,
            ),
            recon.Policy(tolerances=dict.fromkeys(CURRENCIES, Decimal("0.01"))),
        ),
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    await engine.dispose()
    return elapsed, steps, result, fills.fills.matched


async def _reference(url: str) -> float:
    engine = async_engine(url)
    await _warm(engine, 1)
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
        run_s, steps, result, matched = asyncio.run(_run(url, trades))
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
               "statuses": {c.currency: c.status.value for c in result.currencies},
               "customers": CUSTOMERS, "entries": ENTRIES, "fills": FILLS},
    )  # fmt: skip

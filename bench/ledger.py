"""Ledger settlements per second vs pgbench's TPC-B-like script, same server, same concurrency.

One settlement is the postings of one trade: the customer pays GBP from a hold, receives BTC, the
customer fee goes to fee revenue and the provider legs to the provider's account — five legs over
two customer rows and three house accounts that every trade touches. Holds are placed before the
timed part (they belong to the order's reserve step, not to settlement).

The client is one Python process (`CLIENT_PROCESSES`), like one broker worker, running that many
concurrent `Ledger.post` calls on its asyncio loop; the ledger's group commit turns the calls that
arrive together into batches (`ledger_post_batch`) over at most two database sessions. More client
processes mean smaller batches per process: 2 processes measured 0.63 against 0.78 for one at
concurrency 8, and the same at 32. The column "fn via pgbench"
drives one `ledger_post` per transaction from pgbench itself: the database's cost without batching.

Headline (`bench/results/ledger.json`): settlements/s ÷ pgbench TPC-B-like tps at concurrency 32.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import re
import subprocess
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bench.common import print_table, summary, throwaway_postgres, write_result
from devstack.postgres import pgbench_path
from models.database import async_engine
from services.ledger import House, HouseAccount, Ledger, Leg, Posting

CONCURRENCY = (1, 8, 32)
SETTLEMENTS = {1: 1500, 8: 6000, 32: 9000}
CUSTOMERS = 2000
CLIENT_PROCESSES = 1  # one application process; its group commit batches what arrives together
HOUSE_SHARDS = 64  # the default of Ledger and of HOUSE_ACCOUNT_SHARDS
PGBENCH_SECONDS = 8
PRICE = Decimal("68000.00")
BTC = Decimal("0.00100000")
GBP = Decimal("68.00")
FEE = Decimal("0.11")
PROVIDER_FEE = Decimal("0.07")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


async def _setup(url: str) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Customers with a funded GBP account and a BTC account; house shards created."""
    engine = async_engine(url)
    ledger = Ledger(engine)
    with psycopg.connect(_plain(url), autocommit=True) as c:
        c.execute(
            "INSERT INTO users (id, email, password_hash) "
            "SELECT gen_random_uuid(), 'bench-' || i || '@b.test', 'x' FROM generate_series(1, %s) i",
            (CUSTOMERS,),
        )
        users = [r[0] for r in c.execute("SELECT id FROM users ORDER BY email").fetchall()]
    pairs = []
    for u in users:
        gbp = await ledger.customer_account(u, "GBP")
        btc = await ledger.customer_account(u, "BTC")
        pairs.append((gbp, btc))
    # Fund everyone in one posting per 500 customers.
    for start in range(0, len(pairs), 500):
        chunk = pairs[start : start + 500]
        legs = [Leg(gbp, "GBP", Decimal("1000000")) for gbp, _ in chunk]
        legs.append(Leg(House(HouseAccount.BANK_CASH), "GBP", -Decimal("1000000") * len(chunk)))
        await ledger.post(Posting(reference_type="BENCH", reference_id=uuid.uuid4(), step="fund", legs=legs))
    for code, cur in (
        (HouseAccount.FEE_REVENUE, "GBP"),
        (HouseAccount.provider("binance"), "GBP"),
        (HouseAccount.provider("binance"), "BTC"),
    ):
        await ledger.house_shards(code, cur)
    await engine.dispose()
    return pairs


def _reserve_all(url: str, jobs: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]]) -> list[uuid.UUID]:
    """Place one hold per settlement, in bulk inside the database (not timed)."""
    with psycopg.connect(_plain(url), autocommit=True) as c:
        rows = c.execute(
            "SELECT (ledger_reserve(gen_random_uuid(), 'ORDER:' || j.o || ':reserve', j.a, 'GBP', %s, "
            "'ORDER', j.o))"
            ".hold_id FROM unnest(%s::uuid[], %s::uuid[]) WITH ORDINALITY AS j(a, o, n) ORDER BY j.n",
            (GBP + FEE, [j[0] for j in jobs], [j[2] for j in jobs]),
        ).fetchall()
    return [r[0] for r in rows]


def _settlement(order: uuid.UUID, hold: uuid.UUID, gbp: uuid.UUID, btc: uuid.UUID) -> Posting:
    provider = House(HouseAccount.provider("binance"))
    return Posting(
        reference_type="ORDER",
        reference_id=order,
        step="settle",
        kind="trade",
        legs=[
            Leg(gbp, "GBP", -(GBP + FEE), hold_id=hold),
            Leg(House(HouseAccount.FEE_REVENUE), "GBP", FEE - PROVIDER_FEE),
            Leg(provider, "GBP", GBP + PROVIDER_FEE),
            Leg(provider, "BTC", -BTC),
            Leg(btc, "BTC", BTC),
        ],
    )


def _client(url: str, concurrency: int, jobs: list[tuple[Any, ...]], out: Any) -> None:
    async def main() -> tuple[float, list[float]]:
        engine = async_engine(url, pool_size=concurrency, max_overflow=0)
        ledger = Ledger(engine)
        for code, cur in (
            (HouseAccount.FEE_REVENUE, "GBP"),
            (HouseAccount.provider("binance"), "GBP"),
            (HouseAccount.provider("binance"), "BTC"),
        ):
            await ledger.house_shards(code, cur)
        async with engine.connect() as warm:  # open the pool before timing
            del warm
        queue = list(jobs)
        latencies: list[float] = []

        async def worker() -> None:
            while queue:
                gbp, btc, order, hold = queue.pop()
                t0 = time.perf_counter()
                await ledger.post(_settlement(order, hold, gbp, btc))
                latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        await engine.dispose()
        return elapsed, latencies

    out.put(asyncio.run(main()))


def _settle(url: str, pairs: list[tuple[uuid.UUID, uuid.UUID]], concurrency: int) -> dict[str, float]:
    n = SETTLEMENTS[concurrency]
    jobs_base = [(*pairs[i % len(pairs)], uuid.uuid4()) for i in range(n)]
    holds = _reserve_all(url, jobs_base)
    jobs = [(g, b, o, h) for (g, b, o), h in zip(jobs_base, holds, strict=True)]
    procs = min(CLIENT_PROCESSES, concurrency)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    shares = [jobs[i::procs] for i in range(procs)]
    per_proc = [concurrency // procs + (1 if i < concurrency % procs else 0) for i in range(procs)]
    start = time.perf_counter()
    workers = [ctx.Process(target=_client, args=(url, per_proc[i], shares[i], out)) for i in range(procs)]
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    del start
    elapsed = max(r[0] for r in results)
    latencies = [x for r in results for x in r[1]]
    return {"tps": n / elapsed, **summary(latencies)}


def _pgbench(port: int, concurrency: int) -> dict[str, float]:
    args = [
        str(pgbench_path()),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "-n",
        "-c",
        str(concurrency),
        "-j",
        str(min(concurrency, 2)),
        "-T",
        str(PGBENCH_SECONDS),
        "-r",
        "pgbench",
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    lat = re.search(r"latency average = ([0-9.]+) ms", out)
    return {"tps": tps, "latency_avg_ms": float(lat.group(1)) if lat else float("nan")}


SETTLE_SCRIPT = """\\set i random(1, {customers})
SELECT ledger_post(gen_random_uuid(), gen_random_uuid()::text, 'bench', 'trade', 'ORDER', gen_random_uuid(),
  NULL, '{{}}'::jsonb, jsonb_build_array(
   jsonb_build_object('account_id', p.gbp, 'currency', 'GBP', 'amount', '-68.11'),
   jsonb_build_object('house', 'fee_revenue', 'shards', {shards}, 'currency', 'GBP', 'amount', '0.04'),
   jsonb_build_object('house', 'provider:binance', 'shards', {shards}, 'currency', 'GBP', 'amount', '68.07'),
   jsonb_build_object('house', 'provider:binance', 'shards', {shards}, 'currency', 'BTC', 'amount', '-0.001'),
   jsonb_build_object('account_id', p.btc, 'currency', 'BTC', 'amount', '0.001')), true)
FROM bench_pairs p WHERE p.i = :i;
"""


def _settle_in_database(
    url: str, port: int, pairs: list[tuple[uuid.UUID, uuid.UUID]], concurrency: int
) -> float:
    """The same five-leg settlement (without a hold) driven by pgbench: the database's share alone."""
    with psycopg.connect(_plain(url), autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS bench_pairs (i int PRIMARY KEY, gbp uuid, btc uuid)")
        if not c.execute("SELECT 1 FROM bench_pairs LIMIT 1").fetchone():
            with c.cursor().copy("COPY bench_pairs FROM STDIN") as copy:
                for i, (gbp, btc) in enumerate(pairs, 1):
                    copy.write_row((i, gbp, btc))
    script = Path(tempfile.mkdtemp()) / "settle.sql"
    script.write_text(SETTLE_SCRIPT.format(customers=len(pairs), shards=HOUSE_SHARDS))
    args = [
        str(pgbench_path()), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n",
        "-c", str(concurrency), "-j", str(min(concurrency, 2)), "-T", str(PGBENCH_SECONDS),
        "-f", str(script), url.rsplit("/", 1)[1],
    ]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))  # type: ignore[union-attr]


def main() -> None:
    with throwaway_postgres("bench") as (server, url):
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{server.port}/postgres", autocommit=True
        ) as admin:
            admin.execute("CREATE DATABASE pgbench")
        subprocess.run(
            [
                str(pgbench_path()),
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "-i",
                "-q",
                "-s",
                "10",
                "pgbench",
            ],
            capture_output=True,
            check=True,
        )
        pairs = asyncio.run(_setup(url))
        rows = []
        figures: dict[str, Any] = {}
        for c in CONCURRENCY:
            ours = _settle(url, pairs, c)
            ref = _pgbench(server.port, c)
            in_db = _settle_in_database(url, server.port, pairs, c)
            ratio = ours["tps"] / ref["tps"]
            figures[f"c{c}"] = {
                "settlements_per_s": round(ours["tps"], 1),
                "p50_ms": ours["p50_ms"],
                "p99_ms": ours["p99_ms"],
                "pgbench_tps": round(ref["tps"], 1),
                "pgbench_latency_avg_ms": ref["latency_avg_ms"],
                "ratio": round(ratio, 3),
                "settle_function_via_pgbench_tps": round(in_db, 1),
                "settle_function_ratio": round(in_db / ref["tps"], 3),
            }
            rows.append(
                [
                    c,
                    f"{ours['tps']:.0f}",
                    ours["p50_ms"],
                    ours["p99_ms"],
                    f"{ref['tps']:.0f}",
                    ref["latency_avg_ms"],
                    f"{ratio:.2f}",
                    f"{in_db:.0f}",
                    f"{in_db / ref['tps']:.2f}",
                ]
            )
        print_table(
            "Ledger settlements (5 legs, hold commit, shared house accounts) vs pgbench TPC-B-like",
            [
                "clients",
                "settle/s",
                "p50 ms",
                "p99 ms",
                "pgbench tps",
                "pgbench avg ms",
                "ratio",
                "fn via pgbench",
                "fn ratio",
            ],
            rows,
        )
        c32 = figures["c32"]
        write_result(
            "ledger",
            metric="settlements_per_s_c32",
            value=c32["settlements_per_s"],
            reference=c32["pgbench_tps"],
            extra={
                "reference_metric": "pgbench_tpcb_tps_c32",
                "by_concurrency": figures,
                "customers": CUSTOMERS,
                "client_processes": CLIENT_PROCESSES,
            },
        )

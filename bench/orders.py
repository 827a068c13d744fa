"""Market orders end to end (start -> FILLED) vs a no-op workflow of the same shape, same run.

The order saga is five local activities (accept, quote, reserve, settle, the AML trade screening) and two
regular ones (place, notify). The reference workflow runs five no-op local activities and two no-op
regular activities in the same order, on the same dev server and worker, so the ratio isolates what our
activities (and the saga's search-attribute upserts for ops) cost over Temporal's own.

Stack: a throw-away embedded PostgreSQL, `temporal server start-dev` in memory, the Binance and Kraken
sandboxes in their own process (they are the outside world) over HTTP with no injected latency, ccxt
adapters, and one worker in this process.

Production settings: ccxt's throttle ON on every instance (Kraken: about one request a second) and the
router's default 1.5 s deadline. `BENCH_ORDER_BOOKS=live` (default) prices from the live books
(`services.live_books`, the venues' streams through ccxt.pro); `BENCH_ORDER_BOOKS=rest` reads each
venue's book by REST per order, as before. Both report the share of routings that priced every venue.

Also measured: PostgreSQL round trips per order in the worker (statements, BEGIN, COMMIT/ROLLBACK,
pings; `bench/_round_trips.py`) over `ROUND_TRIP_ORDERS` orders one at a time;
`BENCH_ORDERS_ROUND_TRIPS_ONLY=1` stops after that. `BENCH_PROFILE=1` writes a pyinstrument profile of
the concurrency-10 orders to `bench/results/orders-profile.html` and `.txt` (not in git): the main
thread's own stacks (async mode off), so CPU shows where it is spent, not which await waited.

Headline (`bench/results/orders.json`, or `orders-rest.json`): market orders/s ÷ no-op workflows/s at
concurrency 10. `BENCH_ORDER_VENUE=kraken` makes Kraken the better price (`orders-kraken.json`).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from activities.aml import AmlActivities
from activities.orders import OrderActivities
from bench._cpu import KINDS, CpuMeter, postmaster_pid
from bench._round_trips import RoundTrips
from bench._shapes import NoopOrderShape, noop_local, noop_remote
from bench.common import RESULTS, print_table, summary, throwaway_postgres, throwaway_temporal, write_result
from config import Settings
from config.settings import DEV_SECRETS
from devstack.ports import free_port_run, wait_for_port
from models.market import OrderType, Side
from models.order_flow import OrderRequest, OrderState, OrderStatus
from providers.exchanges.book_streams import BookStream, StreamConfig
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from sandbox.runner import REGISTRY
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.live_books import BookKeeper, LiveBookSource, rest_budgets
from services.router import Router, RouterParams
from temporal.order_sagas import TemporalOrderSagas
from workers.main import worker_engine
from workflows.orders import OrderWorkflow, workflow_id

# The venue with the better price, where the buys go: `BENCH_ORDER_VENUE=kraken` measures Kraken's
# placements under its request limits (fewer orders: a Starter key confirms about one every 3 s once
# its burst of 15 is spent).
VENUE = os.environ.get("BENCH_ORDER_VENUE", "binance")
# Kraken's account tier (`starter`, `intermediate`, `pro`: its request counters); empty: the default.
KRAKEN_TIER = os.environ.get("BENCH_KRAKEN_TIER", "")
CONCURRENCY = (1, 10, 50) if VENUE == "binance" else (1, 10)
ORDERS = {1: 25, 10: 150, 50: 300} if VENUE == "binance" else {1: 10, 10: 40}
CUSTOMERS = 60
QUEUE = "bench-orders"
BOOKS = os.environ.get("BENCH_ORDER_BOOKS", "live")
ROUND_TRIP_ORDERS = 10
ROUND_TRIPS_ONLY = os.environ.get("BENCH_ORDERS_ROUND_TRIPS_ONLY", "") == "1"
PROFILE = os.environ.get("BENCH_PROFILE", "") == "1"


async def _load(n: int, concurrency: int, start: Any) -> tuple[float, list[float], int]:
    """Run `n` workflows via `start(i)`, `concurrency` in flight: (elapsed, latencies ms, failures)."""
    queue = list(range(n))
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            ok = await start(i)
            latencies.append((time.perf_counter() - t0) * 1000)
            failures += 0 if ok else 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, failures


async def _sandbox_process() -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """`python -m sandbox` on free ports: the venues use their own CPU, as real ones do."""
    base = free_port_run(max(entry[0] for entry in REGISTRY.values()) + 1)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--base-port", str(base), "--seed", "3",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    for off in (0, 1):
        await asyncio.to_thread(wait_for_port, base + off, 30)
    return proc, {"binance": f"http://127.0.0.1:{base}", "kraken": f"http://127.0.0.1:{base + 1}"}


async def _run(url: str, client: Client, postmaster: int | None = None) -> None:
    proc, venue_urls = await _sandbox_process()
    # The worker's own pool (workers.main.worker_engine: no ping per checkout), sized for the load.
    engine = worker_engine(
        Settings(environment="test", database_url=url, worker_db_pool_size=30, worker_db_max_overflow=30)
    )
    round_trips = RoundTrips()
    round_trips.watch(engine)
    ledger = Ledger(engine)
    adapters: dict[str, CcxtAdapter] = {}
    closers: list[Any] = []
    try:
        async with httpx.AsyncClient() as http:
            for name in ("binance", "kraken"):
                base = venue_urls[name]
                await http.post(f"{base}/_control/walk", json={"enabled": False})
                # Deep books so hundreds of orders never run out; VENUE cheaper (by enough to win after
                # Kraken's dearer fee when it is Kraken).
                top = 68000 if name == VENUE else (68040 if VENUE == "binance" else 68400)
                await http.post(
                    f"{base}/_control/book",
                    json={
                        "symbol": "BTC-GBP",
                        "bids": [[str(top - 100), "1000"]],
                        "asks": [[str(top), "1000"], [str(top + 50), "1000"]],
                    },
                )
        for name in ("binance", "kraken"):
            tier: dict[str, Any] = {"account_tier": KRAKEN_TIER} if name == "kraken" and KRAKEN_TIER else {}
            adapters[name] = CcxtAdapter(
                ExchangeConfig(
                    name=name,
                    exchange_id=name,
                    api_key=DEV_SECRETS[f"{name}_api_key"],
                    secret=DEV_SECRETS[f"{name}_secret"],
                    base_url=venue_urls[name],
                    enable_rate_limit=True,  # production
                    **tier,
                )
            )
            adapters[name].exchange.timeout_on_exit = 0
            await adapters[name].load()
        settings = Settings(environment="test", database_url=url)
        sources: dict[str, Any] = dict(adapters)
        if BOOKS == "live":
            keeper = BookKeeper(
                {n: BookStream(StreamConfig(n, n, rest_url=venue_urls[n])) for n in adapters},
                ["BTC-GBP"],
                budgets=rest_budgets(list(adapters), processes=2),
            )
            keeper.start()
            closers.append(keeper.stop)
            while not all(keeper.fresh_book(n, "BTC-GBP") for n in adapters):
                await asyncio.sleep(0.05)
            sources = {n: LiveBookSource(n, keeper, a) for n, a in adapters.items()}
        router = Router(sources, params=RouterParams())  # production deadline (1.5 s)
        acts = OrderActivities(
            engine=engine,
            ledger=ledger,
            router=router,
            adapters=adapters,
            settings=settings,
        )
        users = await _customers(engine, ledger)

        async with Worker(
            client,
            task_queue=QUEUE,
            workflows=[OrderWorkflow, NoopOrderShape],
            activities=[
                acts.accept,
                acts.quote,
                acts.reserve,
                acts.place,
                acts.settle,
                acts.mark,
                acts.venue_status,
                acts.cancel_at_venue,
                acts.resolve_placement,
                acts.verify_resolution,
                acts.notify,
                AmlActivities(engine=engine, settings=settings).screen_trade,
                noop_local,
                noop_remote,
            ],  # fmt: skip
            max_concurrent_activities=200,
            max_concurrent_local_activities=200,
            max_concurrent_workflow_tasks=200,
        ):
            # Warm up: markets loaded, pools open, the sticky cache primed.
            for i in range(3):
                await _order(client, users[i])
                noop_id = f"noop-{uuid.uuid4()}"
                await client.execute_workflow(NoopOrderShape.run, "w", id=noop_id, task_queue=QUEUE)
            async with engine.connect() as conn:
                newest = text("SELECT id FROM orders ORDER BY created_at DESC LIMIT 1")
                last = (await conn.execute(newest)).scalar()
            shapes = {
                "order": await _history_shape(client, workflow_id(last)),
                "no-op": await _history_shape(client, noop_id),
            }
            print(f"history events per workflow: {shapes}")
            round_trips.reset()
            for i in range(ROUND_TRIP_ORDERS):
                await _order(client, users[i])
            per_order = {k: v / ROUND_TRIP_ORDERS for k, v in sorted(round_trips.counts.items())}
            print(
                "PostgreSQL round trips per market order (worker): "
                f"{round_trips.total / ROUND_TRIP_ORDERS:.1f} {per_order}; statements by step: "
                f"{ {k: v / ROUND_TRIP_ORDERS for k, v in round_trips.statements_by_step.items()} }"
            )
            if ROUND_TRIPS_ONLY:
                return
            rows = []
            cpu_rows: list[list[Any]] = []
            figures: dict[str, Any] = {"round_trips_per_order": per_order, "history_events": shapes}
            for c in CONCURRENCY:
                n = ORDERS[c]

                async def one_order(i: int) -> bool:
                    return await _order(client, users[i % len(users)])

                async def one_noop(i: int) -> bool:
                    await client.execute_workflow(
                        NoopOrderShape.run, "x", id=f"noop-{uuid.uuid4()}", task_queue=QUEUE
                    )
                    return True

                meter = CpuMeter(extra_roots=(postmaster,) if postmaster else ())
                meter.start()
                if PROFILE and c == 10:
                    from pyinstrument import Profiler

                    with Profiler(async_mode="disabled") as profiler:
                        o_elapsed, o_lat, o_fail = await _load(n, c, one_order)
                    RESULTS.mkdir(parents=True, exist_ok=True)
                    (RESULTS / "orders-profile.html").write_text(profiler.output_html())
                    (RESULTS / "orders-profile.txt").write_text(
                        profiler.output_text(unicode=False, color=False, show_all=False)
                    )
                else:
                    o_elapsed, o_lat, o_fail = await _load(n, c, one_order)
                o_cpu = meter.stop(n)
                meter.start()
                r_elapsed, r_lat, _ = await _load(n, c, one_noop)
                r_cpu = meter.stop(n)
                cpu_rows.append([c, "order", *(o_cpu[k] for k in (*KINDS, "total"))])
                cpu_rows.append([c, "no-op", *(r_cpu[k] for k in (*KINDS, "total"))])
                o_rate, r_rate = n / o_elapsed, n / r_elapsed
                o_s, r_s = summary(o_lat), summary(r_lat)
                figures[f"c{c}"] = {
                    "orders_per_s": round(o_rate, 2),
                    "p50_ms": o_s["p50_ms"],
                    "p99_ms": o_s["p99_ms"],
                    "noop_per_s": round(r_rate, 2),
                    "noop_p50_ms": r_s["p50_ms"],
                    "noop_p99_ms": r_s["p99_ms"],
                    "ratio": round(o_rate / r_rate, 3),
                    "orders": n,
                    "not_filled": o_fail,
                    "cpu_ms_per_order": o_cpu,
                    "cpu_ms_per_noop": r_cpu,
                }
                rows.append(
                    [c, n, f"{o_rate:.1f}", o_s["p50_ms"], o_s["p99_ms"], f"{r_rate:.1f}", r_s["p50_ms"],
                     r_s["p99_ms"], f"{o_rate / r_rate:.2f}", o_fail]
                )  # fmt: skip
        print_table(
            "Market orders end to end vs a no-op workflow of the same shape (5 local + 2 regular activities)",
            [
                "conc",
                "n",
                "orders/s",
                "p50 ms",
                "p99 ms",
                "noop/s",
                "noop p50",
                "noop p99",
                "ratio",
                "not filled",
            ],
            rows,
        )
        print_table(
            "CPU milliseconds per workflow, by process (this process runs the worker and the clients)",
            ["conc", "workflow", *KINDS, "total"],
            cpu_rows,
        )
        priced_all, routed = await _priced_every_venue(engine)
        print(f"routings that priced every venue: {priced_all}/{routed} ({BOOKS} books, throttle on)")
        c10 = figures["c10"]
        suffix = ("" if BOOKS == "live" else f"-{BOOKS}") + ("" if VENUE == "binance" else f"-{VENUE}")
        suffix += f"-{KRAKEN_TIER}" if KRAKEN_TIER else ""
        name = "orders" + suffix
        write_result(
            name,
            metric="market_orders_per_s_c10",
            value=c10["orders_per_s"],
            reference=c10["noop_per_s"],
            extra={
                "reference_metric": "noop_same_shape_workflows_per_s_c10",
                "books": BOOKS,
                "cheaper_venue": VENUE,
                "kraken_tier": KRAKEN_TIER or "default",
                "throttle": "ccxt enableRateLimit=True",
                "priced_every_venue": f"{priced_all}/{routed}",
                "by_concurrency": figures,
            },
        )
    finally:
        for close in closers:
            await close()
        for a in adapters.values():
            await a.close()
        await engine.dispose()
        proc.terminate()
        await proc.wait()


async def _priced_every_venue(engine: Any) -> tuple[int, int]:
    """(orders whose best-execution record priced every venue, orders with a record)."""
    async with engine.connect() as c:
        rows = (
            await c.execute(text("SELECT execution_record FROM orders WHERE execution_record IS NOT NULL"))
        ).all()
    records = [r[0] for r in rows]
    every = sum(
        1 for rec in records if rec.get("quotes") and all(q["outcome"] == "ok" for q in rec["quotes"])
    )
    return every, len(records)


async def _customers(engine: Any, ledger: Ledger) -> list[uuid.UUID]:
    users = []
    for _ in range(CUSTOMERS):
        uid = uuid.uuid4()
        async with engine.begin() as c:
            await c.execute(
                text("INSERT INTO users (id, email, password_hash, kyc_tier) VALUES (:i, :e, 'x', 3)"),
                {"i": uid, "e": f"{uid}@bench.test"},
            )
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
        users.append(uid)
    return users


async def _order(client: Client, user: uuid.UUID) -> bool:
    """One market buy, started as the API starts it (`TemporalOrderSagas`: the search attributes ops
    filter on are set at the start), awaited to its end."""
    req = OrderRequest(
        order_id=uuid.uuid4(), user_id=user, symbol="BTC-GBP", side=Side.BUY, type=OrderType.MARKET,
        amount=Decimal("0.001"),
    )  # fmt: skip
    await TemporalOrderSagas(client, QUEUE).start(req, notional_gbp=Decimal("68.00"))
    state = await client.get_workflow_handle(workflow_id(req.order_id), result_type=OrderState).result()
    return state.status is OrderStatus.FILLED


async def _history_shape(client: Client, wf_id: str) -> dict[str, int]:
    """Event counts of one finished workflow's history, by type (what the server stored and sent)."""
    history = await client.get_workflow_handle(wf_id).fetch_history()
    counts: dict[str, int] = {"events": len(history.events)}
    for event in history.events:
        name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
        counts[name] = counts.get(name, 0) + 1
    return counts


async def _main() -> None:
    with throwaway_postgres("bench_orders") as (server, url):
        async with throwaway_temporal() as env:
            await _run(url, env.client, postmaster_pid(server.data_dir))


def main() -> None:
    asyncio.run(_main())

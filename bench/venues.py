"""Best quotes over three venues: live books vs REST reads, ccxt's throttle ON (`make bench BENCH=venues`).

Three sandbox venues in this process (the Binance app twice, with different seeds, and the Kraken app),
each with 50 ms of latency injected on its REST depth endpoint (a network round trip). Every ccxt
instance runs with `enableRateLimit=True`, as in production: Kraken's throttle allows about one
request a second.

Cases, each timed as `Router.quote` for a best quote over the three venues:
- `live`: the router prices from `services.live_books` (one `BookKeeper` over the venues' WebSocket
  streams through ccxt.pro); no venue request on the quote path.
- `rest`: the router reads each venue's book by REST per quote, as before the live books.
- `rest_one_venue`: one venue's REST book read alone (the headline's reference).
Then 30 concurrent quotes, three rounds, per source, counting the routings that priced every venue
(the REST path queues behind Kraken's throttle and misses the router's 1.5 s deadline).

Headline (`bench/results/venues.json`): live-book best-quote p50 ÷ one venue's REST round-trip p50.
"""

from __future__ import annotations

import asyncio
import os
import time
from decimal import Decimal
from typing import Any

import aiohttp

from bench.common import print_table, summary, write_result
from config.settings import DEV_SECRETS
from models.market import QuoteOutcome, Side
from providers.exchanges.book_streams import BookStream, StreamConfig
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from sandbox.runner import build_app, serve, start_venues
from services.live_books import BookKeeper, LiveBookSource, RestBudget
from services.router import Router, RouterParams, RoutingRefused

LATENCY_MS = 50
SAMPLES = int(os.environ.get("BENCH_VENUES_SAMPLES", "200"))
REST_SAMPLES = int(os.environ.get("BENCH_VENUES_REST_SAMPLES", "20"))  # Kraken's throttle: ~1 s each
CONCURRENT = 30
ROUNDS = 3
SYMBOL = "BTC-GBP"
AMOUNT = Decimal("0.05")
MAX_SLIPPAGE = Decimal("0.2")  # wide: the bench measures time, not whether the venues agree on price


async def _timed_quote(router: Router) -> tuple[float, bool]:
    """(ms, whether every venue was priced)."""
    started = time.perf_counter()
    try:
        record = await router.quote(SYMBOL, Side.BUY, amount=AMOUNT, max_slippage=MAX_SLIPPAGE)
        all_priced = all(q.outcome is QuoteOutcome.OK for q in record.quotes)
    except RoutingRefused as exc:
        all_priced = all(q.outcome is QuoteOutcome.OK for q in exc.record.quotes)
    return (time.perf_counter() - started) * 1000, all_priced


async def _concurrent(router: Router) -> tuple[list[float], int, int]:
    times: list[float] = []
    priced_all = total = 0
    for _ in range(ROUNDS):
        results = await asyncio.gather(*(_timed_quote(router) for _ in range(CONCURRENT)))
        times += [t for t, _ in results]
        priced_all += sum(1 for _, ok in results if ok)
        total += len(results)
        await asyncio.sleep(1.0)
    return times, priced_all, total


async def _run() -> dict[str, Any]:
    running = await start_venues(["binance", "kraken"])
    second, port = await serve(build_app("binance", seed=7), "127.0.0.1", 0)
    running.runners.append(second)
    urls = {
        "binance": (running.urls["binance"], "binance"),
        "kraken": (running.urls["kraken"], "kraken"),
        "binance-b": (f"http://127.0.0.1:{port}", "binance"),
    }
    out: dict[str, Any] = {}
    try:
        async with aiohttp.ClientSession() as session:
            for url, _ in urls.values():
                fault = {
                    "kind": "latency",
                    "latency_ms": LATENCY_MS,
                    "paths": ["/api/v3/depth", "/0/public/Depth"],
                }
                async with session.post(f"{url}/_control/faults", json=fault) as response:
                    response.raise_for_status()
        adapters = {
            name: CcxtAdapter(
                ExchangeConfig(
                    name=name,
                    exchange_id=proto,
                    api_key=DEV_SECRETS[f"{proto}_api_key"],
                    secret=DEV_SECRETS[f"{proto}_secret"],
                    base_url=url,
                    enable_rate_limit=True,  # production
                )
            )
            for name, (url, proto) in urls.items()
        }
        for adapter in adapters.values():
            adapter.exchange.timeout_on_exit = 0
            await adapter.load()
        keeper = BookKeeper(
            {
                name: BookStream(StreamConfig(name, proto, rest_url=url))
                for name, (url, proto) in urls.items()
            },
            [SYMBOL],
            budgets={name: RestBudget(rate_per_s=0.5) for name in urls},
        )
        keeper.start()
        while not all(keeper.fresh_book(name, SYMBOL) for name in urls):
            await asyncio.sleep(0.05)
        params = RouterParams(deadline_s=1.5)
        live = Router({n: LiveBookSource(n, keeper, a) for n, a in adapters.items()}, params=params)
        rest = Router(adapters, params=params)

        for _ in range(10):
            await _timed_quote(live)
        out["live"] = [(await _timed_quote(live))[0] for _ in range(SAMPLES)]
        out["rest"] = [(await _timed_quote(rest))[0] for _ in range(REST_SAMPLES)]
        one_venue: list[float] = []
        for _ in range(SAMPLES):
            started = time.perf_counter()
            await adapters["binance"].order_book(SYMBOL)
            one_venue.append((time.perf_counter() - started) * 1000)
        out["rest_one_venue"] = one_venue
        out["live_concurrent"] = await _concurrent(live)
        out["rest_concurrent"] = await _concurrent(Router(adapters, params=params))  # fresh breakers
        await keeper.stop()
        for adapter in adapters.values():
            await adapter.close()
        return out
    finally:
        await running.stop()


def main() -> None:
    samples = asyncio.run(_run())
    live, rest, one = summary(samples["live"]), summary(samples["rest"]), summary(samples["rest_one_venue"])
    live_c_times, live_all, live_total = samples["live_concurrent"]
    rest_c_times, rest_all, rest_total = samples["rest_concurrent"]
    live_c, rest_c = summary(live_c_times), summary(rest_c_times)
    rows = [
        ["one venue's REST book (reference)", one["p50_ms"], one["p99_ms"], len(samples["rest_one_venue"]),
         "-"],
        ["best quote, 3 venues, live books", live["p50_ms"], live["p99_ms"], len(samples["live"]), "-"],
        ["best quote, 3 venues, REST", rest["p50_ms"], rest["p99_ms"], len(samples["rest"]), "-"],
        [f"{CONCURRENT} concurrent, live books", live_c["p50_ms"], live_c["p99_ms"], live_total,
         f"{live_all}/{live_total}"],
        [f"{CONCURRENT} concurrent, REST", rest_c["p50_ms"], rest_c["p99_ms"], rest_total,
         f"{rest_all}/{rest_total}"],
    ]  # fmt: skip
    print_table(
        f"Best quote over 3 venues, ccxt throttle ON, +{LATENCY_MS} ms on REST depth",
        ["case", "p50 ms", "p99 ms", "n", "priced every venue"],
        rows,
    )
    write_result(
        "venues",
        metric="live_book_best_quote_p50_ms",
        value=live["p50_ms"],
        reference=one["p50_ms"],
        extra={
            "reference_metric": "one_venue_rest_book_p50_ms",
            "throttle": "ccxt enableRateLimit=True on every instance",
            "venues": 3,
            "injected_rest_latency_ms": LATENCY_MS,
            "live_books": live,
            "rest_books": rest,
            "one_venue_rest": one,
            "concurrent": {
                "orders_per_round": CONCURRENT,
                "rounds": ROUNDS,
                "live": {**live_c, "priced_every_venue": f"{live_all}/{live_total}"},
                "rest": {**rest_c, "priced_every_venue": f"{rest_all}/{rest_total}"},
            },
        },
    )

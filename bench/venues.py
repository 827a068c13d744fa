"""Quote fan-out: does the router ask venues in parallel? (`make bench BENCH=venues`)

Three sandbox venues over real HTTP (two Binance-protocol apps with different seeds and the Kraken
app, all from `sandbox/`, in this process on ephemeral ports), each with 50 ms of latency injected on
its depth endpoint through the sandbox control API. We time `Router.quote` for a best quote across
all three, and, as the same-run reference, the same router with one venue alone. Parallel asking
makes the three-venue p50 close to the one-venue p50 (≈50 ms + HTTP); sequential asking would make it
about three times that, which the third row measures for comparison.

The venues are read through the production path: ccxt's own `binance` and `kraken` classes inside our
`CcxtAdapter`, over HTTP to the sandboxes.
"""

from __future__ import annotations

import asyncio
import os
import time
from decimal import Decimal

import aiohttp

from bench.common import print_table, summary, write_result
from config.settings import DEV_SECRETS
from models.market import Side
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from sandbox.runner import build_app, serve, start_venues
from services.router import Router, RouterParams, RoutingRefused

LATENCY_MS = 50
SAMPLES = int(os.environ.get("BENCH_VENUES_SAMPLES", "200"))
WARMUP = 10
SYMBOL = "BTC-GBP"
AMOUNT = Decimal("0.05")
MAX_SLIPPAGE = Decimal("0.2")  # wide: the bench measures time, not whether the venues agree on price
TAKER = Decimal("0.001")  # the sandboxes' default taker fee (10 bp)
KRAKEN_PAIRS = {"BTC-GBP": "XBTGBP", "ETH-GBP": "ETHGBP", "BNB-GBP": "BNBGBP"}


async def _timed_quotes(router: Router) -> float:
    started = time.perf_counter()
    try:
        await router.quote(SYMBOL, Side.BUY, amount=AMOUNT, max_slippage=MAX_SLIPPAGE)
    except RoutingRefused:
        pass  # still a complete decision; its time counts the same
    return (time.perf_counter() - started) * 1000


async def _run() -> dict[str, list[float]]:
    running = await start_venues(["binance", "kraken"])
    second, port = await serve(build_app("binance", seed=7), "127.0.0.1", 0)
    running.runners.append(second)
    urls = {
        "binance": (running.urls["binance"], "binance"),
        "kraken": (running.urls["kraken"], "kraken"),
        "binance-b": (f"http://127.0.0.1:{port}", "binance"),
    }
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
            sources = {
                name: CcxtAdapter(
                    ExchangeConfig(
                        name=name,
                        exchange_id=proto,
                        api_key=DEV_SECRETS[f"{proto}_api_key"],
                        secret=DEV_SECRETS[f"{proto}_secret"],
                        base_url=url,
                        enable_rate_limit=False,
                    )
                )
                for name, (url, proto) in urls.items()
            }
            for adapter in sources.values():
                adapter.exchange.timeout_on_exit = 0
                await adapter.load()
            params = RouterParams(deadline_s=2.0)
            fan_out = Router(sources, params=params)
            single = Router({"binance": sources["binance"]}, params=params)

            for _ in range(WARMUP):
                await _timed_quotes(fan_out)
                await _timed_quotes(single)
            samples: dict[str, list[float]] = {
                "fan_out": [],
                "single": [],
                "sequential": [],
                "router_fanout": [],
            }
            for i in range(SAMPLES):
                # Interleaved so machine-load drift hits both series alike.
                samples["single"].append(await _timed_quotes(single))
                samples["fan_out"].append(await _timed_quotes(fan_out))
                if i % 4 == 0:  # the sequential comparison is slow and only context: a quarter of the samples
                    started = time.perf_counter()
                    for source in sources.values():
                        await source.order_book(SYMBOL)
                    samples["sequential"].append((time.perf_counter() - started) * 1000)
            # The router's own view: its recorded fan-out time and per-venue latencies.
            record = await fan_out.quote(SYMBOL, Side.BUY, amount=AMOUNT, max_slippage=MAX_SLIPPAGE)
            samples["router_fanout"].append(record.fanout_ms)
            samples["last_venue_latencies"] = [q.latency_ms or 0.0 for q in record.quotes]
            for adapter in sources.values():
                await adapter.close()
            return samples
    finally:
        await running.stop()


def main() -> None:
    samples = asyncio.run(_run())
    fan, one, seq = summary(samples["fan_out"]), summary(samples["single"]), summary(samples["sequential"])
    cases = [
        ("one venue (reference)", one, "single"),
        ("best quote, 3 venues in parallel", fan, "fan_out"),
        ("3 books one after another (context)", seq, "sequential"),
    ]
    rows = [[label, s["p50_ms"], s["p99_ms"], s["mean_ms"], len(samples[key])] for label, s, key in cases]
    title = f"Quote fan-out, each venue +{LATENCY_MS} ms on its depth endpoint"
    print_table(title, ["case", "p50", "p99", "mean", "n"], rows)
    latencies = samples["last_venue_latencies"]
    print(f"last decision: fan-out {samples['router_fanout'][0]:.1f} ms, per-venue latencies {latencies}")
    write_result(
        "venues",
        metric="best_quote_p50_ms",
        value=fan["p50_ms"],
        reference=one["p50_ms"],
        extra={
            "venues": 3,
            "injected_latency_ms": LATENCY_MS,
            "samples": SAMPLES,
            "best_quote": fan,
            "one_venue": one,
            "sequential_three_books": seq,
            "ratio_to_nominal_50ms": round(fan["p50_ms"] / LATENCY_MS, 4),
            "transport": "sandbox venues over HTTP via a raw depth-endpoint book source (not ccxt)",
        },
    )

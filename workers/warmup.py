"""Warm the venue adapters before a worker takes its first task.

A cold adapter pays for ccxt's market loading, its fee tables and new HTTP connections on its first
call. Inside a quote that first call has the router's per-venue deadline (1.5 s), so a worker started
with orders already waiting (after a crash, or a deploy) refused them with "no venue answered" while
every venue was fine. Loading markets and reading one book per symbol first moves that cost out of
the orders' way. A venue that cannot be warmed is logged and left to the router's breakers: a venue
outage must not keep the worker from serving the other venues and the other queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

from models.market import SYMBOLS
from providers.exchanges.base import ExecutionAdapter

log = logging.getLogger("workers.warmup")


async def _warm_one(adapter: ExecutionAdapter, symbols: Iterable[str], read_books: bool) -> None:
    await adapter.load()
    if read_books:
        for symbol in symbols:
            await adapter.order_book(symbol, depth=5)


async def warm_venues(
    adapters: Mapping[str, ExecutionAdapter],
    *,
    book_venues: Iterable[str],
    symbols: Iterable[str] = SYMBOLS,
    timeout_s: float = 15.0,
) -> dict[str, str | None]:
    """Load every adapter's markets and read a first book per symbol at `book_venues` (the exchanges the
    router quotes; the OTC desk's "book" is a pair of binding quotes, so it is only loaded).

    Returns venue -> None when warm, or why it is not (also logged); never raises for a venue.
    """
    wanted = set(book_venues)
    listed = list(symbols)
    names = list(adapters)
    results = await asyncio.gather(
        *(asyncio.wait_for(_warm_one(adapters[n], listed, n in wanted), timeout=timeout_s) for n in names),
        return_exceptions=True,
    )
    outcome: dict[str, str | None] = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            why = "timed out" if isinstance(result, TimeoutError) else type(result).__name__
            log.warning("venue %s not warmed before taking tasks (%s); the router will judge it", name, why)
            outcome[name] = why
        else:
            outcome[name] = None
    log.info("venues warm: %s", ", ".join(n for n, why in outcome.items() if why is None) or "none")
    return outcome

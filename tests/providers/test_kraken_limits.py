"""Kraken's request limits, kept as Kraken counts them: outside the nonce lock, with the key's real burst.

ccxt's own throttle for Kraken spaced every private call 3 s apart inside the adapter's nonce lock, so
concurrent placements went out one every 3 s and even a public book read queued behind them. These
tests count, never time: calls that had to wait for the counter, calls the venue refused, and what
was still in flight when another call finished. The Kraken sandbox enforces Kraken's counter when
asked (`/_control/rate_counter`), so "the venue refused none" is the venue's word, not ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from models.market import VenueOrderStatus
from providers.exchanges.base import AmbiguousPlacement, RetryableVenueError
from providers.exchanges.ccxt_adapter import CcxtAdapter
from providers.exchanges.kraken import TIERS, KrakenExchange, KrakenTier
from providers.exchanges.rate_counter import DecayingCounter
from sandbox.runner import RunningSandboxes
from tests.providers.conftest import VenueControl, exchange_config, quick_close
from tests.providers.test_faults import BOOK, PLACE_PATH, buy

STARTER = TIERS["starter"]


@pytest_asyncio.fixture
async def kraken(sandboxes: RunningSandboxes, http: httpx.AsyncClient) -> AsyncIterator[VenueControl]:
    control = VenueControl("kraken", sandboxes.urls["kraken"], http)
    await control.reset()
    await control.book("BTC-GBP", **BOOK)
    await control.set_balances(GBP="1000000")
    try:
        yield control
    finally:
        await http.delete(f"{control.url}/_control/rate_counter")


async def _venue_counter(control: VenueControl, tier: KrakenTier) -> None:
    """The sandbox refuses calls as Kraken does for a key of `tier`."""
    await control.post("rate_counter", {"ceiling": tier.rest_ceiling, "decay_per_s": tier.rest_decay_per_s})


async def _refused(control: VenueControl) -> int:
    r = await control.http.get(f"{control.url}/_control/rate_counter")
    refused: int = r.json()["refused"]
    return refused


async def _adapter(control: VenueControl, tier: KrakenTier | None = None, **overrides: Any) -> CcxtAdapter:
    """A Kraken adapter with production limits (`tier`: other counters than the Starter tier's).

    These tests count, never time: a 10 s timeout, not the directory's 1 s, so a slow answer on a
    loaded machine is not mistaken for the unknown outcome the counter exists to prevent.
    """
    values: dict[str, Any] = {"enable_rate_limit": True, "timeout_ms": 10_000, **overrides}
    config = exchange_config("kraken", control.url, **values)
    adapter = quick_close(CcxtAdapter(config))
    if tier is not None:
        adapter.exchange.limit_requests(tier, 1)
    await adapter.load()
    return adapter


async def test_a_burst_of_placements_within_the_keys_allowance_goes_out_without_waiting(
    kraken: VenueControl,
) -> None:
    # A Starter key (counter ceiling 15): ten placements, each confirmed by one QueryOrders (+1), fit.
    await _venue_counter(kraken, STARTER)
    adapter = await _adapter(kraken)
    exchange: KrakenExchange = adapter.exchange
    try:
        placed = await asyncio.gather(*(adapter.place_order(buy()) for _ in range(10)))
        assert all(o.status is VenueOrderStatus.FILLED for o in placed)
        assert exchange.rest_counter.taken >= 10 and exchange.trading_counter.taken == 10
        assert exchange.rest_counter.waited == 0 and exchange.trading_counter.waited == 0
        assert await _refused(kraken) == 0
        assert len(await kraken.orders()) == 10
    finally:
        await adapter.close()


async def test_beyond_the_allowance_calls_wait_for_the_counter_and_the_venue_refuses_none(
    kraken: VenueControl,
) -> None:
    # A small, fast-decaying counter so the burst runs out within the test: 8 confirmations, ceiling 3.
    tier = KrakenTier(rest_ceiling=3, rest_decay_per_s=4, trading_ceiling=60, trading_decay_per_s=1)
    await _venue_counter(kraken, tier)
    adapter = await _adapter(kraken, tier)
    try:
        placed = await asyncio.gather(*(adapter.place_order(buy()) for _ in range(8)))
        assert all(o.status is VenueOrderStatus.FILLED for o in placed)
        assert await _refused(kraken) == 0
    finally:
        await adapter.close()
    # The same burst without our counter: the venue refuses confirmations, and an order that was
    # accepted but not confirmed is an unknown outcome. That is what keeping to the limit prevents.
    await kraken.post("rate_counter", {"ceiling": 3, "decay_per_s": 0.01})
    unlimited = await _adapter(kraken, enable_rate_limit=False)
    try:
        outcomes = await asyncio.gather(
            *(unlimited.place_order(buy()) for _ in range(8)), return_exceptions=True
        )
        assert await _refused(kraken) >= 1
        assert any(isinstance(o, AmbiguousPlacement | RetryableVenueError) for o in outcomes)
    finally:
        await unlimited.close()


async def test_a_private_call_held_at_the_venue_holds_up_no_public_read(kraken: VenueControl) -> None:
    # The venue takes the order at once and answers 4 s later; the nonce lock is held all that time
    # (only an answer proves the call arrived), but a book read needs no nonce and does not wait for it.
    adapter = await _adapter(kraken)
    try:
        await kraken.fault("latency", latency_ms=4000, paths=[PLACE_PATH["kraken"]], count=1)
        placing = asyncio.create_task(adapter.place_order(buy()))
        while f"POST {PLACE_PATH['kraken']}" not in await kraken.calls():
            await asyncio.sleep(0.02)
        book = await adapter.order_book("BTC-GBP", 5)
        assert book.asks and not placing.done()  # read while the placement was still in flight
        assert (await placing).status is VenueOrderStatus.FILLED
    finally:
        await adapter.close()


async def test_a_call_counts_from_when_it_is_sent_not_from_when_it_was_admitted() -> None:
    now = [0.0]
    counter = DecayingCounter(3, 1.0, clock=lambda: now[0])
    for _ in range(3):
        await counter.admit(1)  # the burst: all three at once
    assert counter.taken == 3 and counter.waited == 0
    now[0] = 10.0  # they queued (behind the nonce lock) for 10 s: at the venue they count from now
    for _ in range(3):
        counter.charge(1)
    assert counter.level() == 3
    fourth = asyncio.create_task(counter.admit(1))
    await asyncio.sleep(0)
    assert not fourth.done()  # full: waits for the counter to fall
    now[0] = 11.0
    await fourth
    assert counter.waited == 1
    counter.release(1)  # never sent: its place is free again
    assert counter.level() + 1 <= counter.ceiling

"""ccxt.pro's own classes against the sandboxes' book streams, over real WebSockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio

from providers.exchanges.book_streams import BookStream, StreamConfig, StreamedBook
from sandbox.runner import RunningSandboxes
from tests.market_data.conftest import control, fresh, until

pytestmark = pytest.mark.asyncio(loop_scope="session")

BIDS = [("60000.00", "1.00000"), ("59990.00", "2.00000"), ("59980.00", "3.00000")]
ASKS = [("60010.00", "1.00000"), ("60020.00", "2.00000"), ("60030.00", "3.00000")]


def levels(book: StreamedBook) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    return (
        [(lv.price, lv.amount) for lv in book.book.bids],
        [(lv.price, lv.amount) for lv in book.book.asks],
    )


def expected(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> tuple[list, list]:
    return [(Decimal(p), Decimal(a)) for p, a in bids], [(Decimal(p), Decimal(a)) for p, a in asks]


@pytest_asyncio.fixture(params=["binance", "kraken"], loop_scope="session")
async def stream(request: pytest.FixtureRequest, venues: RunningSandboxes) -> AsyncIterator[BookStream]:
    name: str = request.param
    await fresh(venues.urls[name])
    s = BookStream(StreamConfig(name, name, rest_url=venues.urls[name]))
    await s.load()
    try:
        yield s
    finally:
        await s.close()
        await control(venues.urls[name], "stream", method="DELETE")


async def test_the_streamed_book_is_the_venues_book_as_it_changes(
    stream: BookStream, venues: RunningSandboxes
) -> None:
    url = venues.urls[stream.name]
    await until(stream, "BTC-GBP", lambda b: True)
    await control(url, "book", {"symbol": "BTC-GBP", "bids": BIDS, "asks": ASKS})
    await until(stream, "BTC-GBP", lambda b: levels(b) == expected(BIDS, ASKS))
    moved = [("60005.00", "0.50000"), *BIDS]
    await control(url, "book", {"symbol": "BTC-GBP", "bids": moved, "asks": ASKS[1:]})
    await until(stream, "BTC-GBP", lambda b: levels(b) == expected(moved, ASKS[1:]))


async def test_a_lost_update_resyncs_to_the_venues_book(stream: BookStream, venues: RunningSandboxes) -> None:
    url = venues.urls[stream.name]
    await control(url, "book", {"symbol": "BTC-GBP", "bids": BIDS, "asks": ASKS})
    await until(stream, "BTC-GBP", lambda b: levels(b) == expected(BIDS, ASKS))
    await control(url, "stream", {"kind": "gap", "count": 1})
    after_gap = [("59995.00", "4.00000"), *BIDS[1:]]
    await control(url, "book", {"symbol": "BTC-GBP", "bids": after_gap, "asks": ASKS})
    await asyncio.sleep(0.3)  # the lost change is behind us
    final = [("59997.00", "5.00000"), *BIDS[1:]]
    await control(url, "book", {"symbol": "BTC-GBP", "bids": final, "asks": ASKS})
    seen: list[StreamedBook] = []

    def record(b: StreamedBook) -> bool:
        seen.append(b)
        return levels(b) == expected(final, ASKS)

    await until(stream, "BTC-GBP", record)
    # Every verified book the stream handed out was one the venue really had (no mixed, wrong book).
    truths = [expected(BIDS, ASKS), expected(after_gap, ASKS), expected(final, ASKS)]
    assert all(levels(b) in truths for b in seen if b.verified)


async def test_a_corrupted_kraken_update_is_caught_by_its_checksum(venues: RunningSandboxes) -> None:
    url = venues.urls["kraken"]
    await fresh(url)
    s = BookStream(StreamConfig("kraken", "kraken", rest_url=url))
    await s.load()
    try:
        await control(url, "book", {"symbol": "BTC-GBP", "bids": BIDS, "asks": ASKS})
        await until(s, "BTC-GBP", lambda b: levels(b) == expected(BIDS, ASKS))
        await control(url, "stream", {"kind": "bad_checksum", "count": 1})
        changed = [("60001.00", "1.50000"), *BIDS]
        await control(url, "book", {"symbol": "BTC-GBP", "bids": changed, "asks": ASKS})
        flagged = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while loop.time() < deadline:
            got = await asyncio.wait_for(s.next_book("BTC-GBP"), 5)
            if not got.verified:
                flagged = True
            elif flagged and levels(got) == expected(changed, ASKS):
                break
        assert flagged, "the corrupted update was not flagged by the checksum"
        assert levels(got) == expected(changed, ASKS)
    finally:
        await s.close()


async def test_binance_refuses_a_checksum_fault_it_cannot_have(venues: RunningSandboxes) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        r = await http.post(f"{venues.urls['binance']}/_control/stream", json={"kind": "bad_checksum"})
    assert r.status_code == 400

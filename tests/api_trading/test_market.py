"""Market data against the in-process sandbox venues: best prices, books, candles, quotes, caching, limits."""

from __future__ import annotations

from decimal import Decimal

import httpx

from api.main import create_app
from api.ratelimit import RateLimits
from tests.api.conftest import assert_problem
from tests.api_trading.conftest import Trading

D = Decimal


async def test_prices_are_the_best_bid_and_ask_across_venues(trading: Trading) -> None:
    r = await trading.http.get("/api/v1/market/prices")
    assert r.status_code == 200, r.text
    prices = {p["symbol"]: p for p in r.json()["prices"]}
    assert set(prices) == {"BTC-GBP", "ETH-GBP", "BNB-GBP"}
    btc = prices["BTC-GBP"]
    assert (btc["bid"], btc["bid_venue"], btc["ask"], btc["ask_venue"]) == (
        "67950.00",
        "kraken",
        "68000.00",
        "binance",
    )
    assert sorted(btc["venues"]) == ["binance", "kraken"] and btc["unavailable"] == {}
    assert all(isinstance(p["bid"], str) and isinstance(p["ask"], str) for p in prices.values())


async def test_order_book_merged_and_per_venue(trading: Trading) -> None:
    r = await trading.http.get("/api/v1/market/orderbook/BTC-GBP", params={"depth": 3})
    assert r.status_code == 200, r.text
    book = r.json()
    assert book["venue"] == "merged" and sorted(book["venues"]) == ["binance", "kraken"]
    assert [(lv["price"], lv["venues"]) for lv in book["bids"]] == [
        ("67950.00", {"kraken": "1.00000000"}),
        ("67900.00", {"binance": "1.00000000"}),
        ("67800.00", {"binance": "2.00000000"}),
    ]
    assert [lv["price"] for lv in book["asks"]] == ["68000.00", "68050.00", "68100.00"]

    r = await trading.http.get("/api/v1/market/orderbook/BTC-GBP", params={"venue": "kraken"})
    book = r.json()
    assert book["venue"] == "kraken" and [lv["price"] for lv in book["asks"]] == ["68050.00", "68300.00"]

    assert_problem(await trading.http.get("/api/v1/market/orderbook/DOGE-GBP"), 404, "unknown_symbol")
    problem = assert_problem(
        await trading.http.get("/api/v1/market/orderbook/BTC-GBP", params={"venue": "nyse"}),
        422,
        "unknown_venue",
    )
    assert problem["errors"][0]["field"] == "query.venue"
    problem = assert_problem(
        await trading.http.get("/api/v1/market/orderbook/BTC-GBP", params={"depth": 0}), 422
    )
    assert problem["errors"][0]["field"] == "query.depth"
    assert_problem(await trading.http.get("/api/v1/market/orderbook/btc_gbp"), 422)


async def test_candles(trading: Trading) -> None:
    r = await trading.http.get("/api/v1/market/candles/BTC-GBP", params={"limit": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["venue"] == "binance" and body["interval"] == "1m"
    assert 1 <= len(body["candles"]) <= 5
    c = body["candles"][-1]
    assert all(isinstance(c[k], str) for k in ("open", "high", "low", "close", "volume"))
    assert D(c["low"]) <= D(c["open"]) <= D(c["high"]) and D(c["low"]) <= D(c["close"]) <= D(c["high"])
    r = await trading.http.get("/api/v1/market/candles/BTC-GBP", params={"venue": "kraken"})
    assert r.status_code == 200 and r.json()["venue"] == "kraken"
    problem = assert_problem(
        await trading.http.get("/api/v1/market/candles/BTC-GBP", params={"interval": "5m"}), 422
    )
    assert problem["errors"][0]["field"] == "query.interval"
    assert_problem(await trading.http.get("/api/v1/market/candles/BTC-GBP", params={"limit": 501}), 422)
    assert_problem(await trading.http.get("/api/v1/market/candles/XRP-GBP"), 404, "unknown_symbol")


async def test_indicative_quote_is_all_in(trading: Trading) -> None:
    r = await trading.http.get(
        "/api/v1/market/quote", params={"symbol": "BTC-GBP", "side": "BUY", "quote_amount": "1000"}
    )
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["venues"] == ["binance"] and q["route"] == "single" and D(q["price"]) == D("68000")
    assert q["fee_currency"] == "GBP" and D(q["fee"]) == (D(q["quote_amount"]) * D("0.0015")).quantize(
        D("0.01"), "ROUND_CEILING"
    )
    assert D(q["total"]) == D(q["quote_amount"]).quantize(D("0.01"), "ROUND_CEILING") + D(q["fee"])

    r = await trading.http.get(
        "/api/v1/market/quote", params={"symbol": "BTC-GBP", "side": "SELL", "amount": "0.5"}
    )
    q = r.json()
    # kraken's 67950 bid: 0.5 x 67950 = 33975.00, less our fee 50.97 (rounded up).
    assert (q["venues"], q["quote_amount"], q["fee"], q["total"]) == (
        ["kraken"],
        "33975.00",
        "50.97",
        "33924.03",
    )

    for params, field, code in (
        ({"symbol": "BTC-GBP", "side": "BUY"}, "query.amount", "invalid_size"),
        (
            {"symbol": "BTC-GBP", "side": "BUY", "amount": "1", "quote_amount": "5"},
            "query.amount",
            "invalid_size",
        ),
        ({"symbol": "BTC-GBP", "side": "SELL", "quote_amount": "5"}, "query.quote_amount", "invalid_size"),
        ({"symbol": "BTC-GBP", "side": "BUY", "amount": "0.000000001"}, "query.amount", "invalid_size"),
        ({"symbol": "BTC-GBP", "side": "BUY", "amount": "-1"}, "query.amount", "validation_error"),
        ({"symbol": "DOGE-GBP", "side": "BUY", "amount": "1"}, "query.symbol", "unknown_symbol"),
        ({"symbol": "BTC-GBP", "side": "HOLD", "amount": "1"}, "query.side", "validation_error"),
    ):
        problem = assert_problem(await trading.http.get("/api/v1/market/quote", params=params), 422, code)
        assert field in [e["field"] for e in problem["errors"]], params
    r = await trading.http.get(
        "/api/v1/market/quote", params={"symbol": "BTC-GBP", "side": "BUY", "amount": "500"}
    )
    problem = assert_problem(r, 422, "no_liquidity")
    assert problem["detail"] == "the venues do not have enough liquidity for this size"  # our words only


async def test_venue_reads_are_cached(trading: Trading) -> None:
    before = {n: len(await v.calls()) for n, v in trading.venues.items()}
    for _ in range(10):
        assert (await trading.http.get("/api/v1/market/orderbook/BTC-GBP")).status_code == 200
        assert (await trading.http.get("/api/v1/market/prices")).status_code == 200
    after = {n: await v.calls() for n, v in trading.venues.items()}
    # One book request per symbol per venue (plus at most one refresh if a second boundary passed).
    for name, calls in after.items():
        depth_calls = [c for c in calls[before[name] :] if "epth" in c]
        assert 3 <= len(depth_calls) <= 6, (name, depth_calls)


async def test_market_data_is_rate_limited_per_ip(trading: Trading) -> None:
    app = create_app(
        trading.app.state.settings,
        rate_limits=RateLimits(anonymous_per_minute=3),
        adapters=trading.app.state.market.market().exchanges
        and {n: c.source for n, c in trading.app.state.market.market().exchanges.items()},
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.99.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(3):
                assert (await client.get("/api/v1/market/prices")).status_code == 200
            r = await client.get("/api/v1/market/prices")
            assert_problem(r, 429, "rate_limited")
            assert int(r.headers["retry-after"]) >= 1


async def test_a_budget_quote_and_the_order_placed_right_after_it_agree(trading: Trading) -> None:
    """`quote_amount` means "spend at most this much, our fee included" on the quote as on the order:
    the quote's total stays within the budget, and the order placed right after it buys what the quote
    said, within the slippage bound (the default 1%)."""
    alice = await trading.customer(gbp="5000")
    budget = D("1000")
    r = await trading.http.get(
        "/api/v1/market/quote", params={"symbol": "BTC-GBP", "side": "BUY", "quote_amount": str(budget)}
    )
    assert r.status_code == 200, r.text
    q = r.json()
    assert D(q["total"]) <= budget
    assert D(q["total"]) == D(q["quote_amount"]) + D(q["fee"])

    body = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "quote_amount": str(budget)}
    r = await trading.http.post("/api/v1/orders", json=body, headers=alice.headers())
    assert r.status_code == 202, r.text
    order = await trading.wait_order(alice, r.json()["id"])

    assert order["status"] == "FILLED", order
    bought, spent = D(order["filled_amount"]), D(order["filled_quote_amount"]) + D(order["fee"])
    assert order["fee_currency"] == "GBP" and spent <= budget
    assert abs(bought - D(q["amount"])) <= D(q["amount"]) * D("0.01"), (bought, q["amount"])
    assert abs(spent - D(q["total"])) <= D(q["total"]) * D("0.01"), (spent, q["total"])

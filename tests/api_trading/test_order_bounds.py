"""Sizes the venues cannot trade, and sizes no one may trade, are a 422 at the API (issue 11 items 3-4)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.api.conftest import assert_problem
from tests.api_trading.conftest import Trading

BUY_1000 = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "quote_amount": "1000.00"}
LIMIT = {"symbol": "BTC-GBP", "side": "BUY", "type": "LIMIT", "amount": "0.01", "price": "68000"}
SELL = {"symbol": "BTC-GBP", "side": "SELL", "type": "MARKET", "amount": "0.01"}


@pytest.mark.parametrize(
    ("body", "field", "code", "says"),
    [
        (
            {**BUY_1000, "quote_amount": "999999999999999999.99"},
            "body.quote_amount",
            "order_too_large",
            "100000",
        ),
        ({**LIMIT, "amount": "1000000000000000000"}, "body.amount", "validation_error", "body.amount"),
        ({**LIMIT, "amount": "100000.5", "price": "1"}, "body.amount", "order_too_large", "maximum 100"),
        ({**LIMIT, "amount": "1.5", "price": "1000000"}, "body.amount", "order_too_large", "100000"),
        ({**SELL, "amount": "0.00012345"}, "body.amount", "invalid_lot_size", "steps of 0.00001"),
        ({**SELL, "amount": "0.000001"}, "body.amount", "order_too_small", "minimum 0.00005"),
        ({**BUY_1000, "quote_amount": "1.00"}, "body.quote_amount", "order_too_small", "minimum 5"),
    ],
)
async def test_sizes_out_of_bounds_are_422_naming_the_field_and_write_nothing(
    trading: Trading, body: dict[str, Any], field: str, code: str, says: str
) -> None:
    erin = await trading.customer(gbp="5000", btc="1")
    r = await trading.http.post("/api/v1/orders", json=body, headers=erin.headers(key=str(uuid.uuid4())))
    problem = assert_problem(r, 422, code)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert says in problem["detail"], problem
    assert await trading.order_count(erin.id) == 0


async def test_a_limit_sell_at_a_token_price_needs_the_second_factor(trading: Trading) -> None:
    """Issue 12 item 2: 0.2 BTC "at £50" fills at the bids (about £13,590): above the £10k threshold."""
    kim = await trading.customer(btc="0.5", tier=3, twofa=True)
    body = {"symbol": "BTC-GBP", "side": "SELL", "type": "LIMIT", "amount": "0.2", "price": "50"}
    assert_problem(
        await trading.http.post("/api/v1/orders", json=body, headers=kim.headers()), 403, "totp_required"
    )
    assert await trading.order_count(kim.id) == 0


async def test_the_execution_record_shows_our_words_not_the_venues(trading: Trading) -> None:
    """Issue 12 item 12: a venue fails while quoting; the customer's record says "venue unavailable",
    the stored record keeps the venue's text for staff."""
    await trading.venues["kraken"].fault("http_error", status=502)
    frank = await trading.customer(gbp="5000")
    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=frank.headers())
    assert r.status_code == 202, r.text
    order = await trading.wait_order(frank, r.json()["id"])
    assert order["status"] == "FILLED", order
    r = await trading.http.get(f"/api/v1/orders/{order['id']}/execution", headers=frank.headers())
    assert r.status_code == 200, r.text
    kraken = next(q for q in r.json()["quotes"] if q["provider"] == "kraken")
    assert kraken["outcome"] == "error" and kraken["reason"] == "venue unavailable"
    assert "502" not in r.text and "Server Error" not in r.text
    async with trading.engine.connect() as c:
        stored = (
            await c.execute(text("SELECT execution_record FROM orders WHERE id = :o"), {"o": order["id"]})
        ).scalar_one()
    assert "502" in str(stored)

"""Sizes the venues cannot trade, and sizes no one may trade, are a 422 at the API (issue 11 items 3-4)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

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
        ({**SELL, "amount": "0.000001"}, "body.amount", "order_too_small", "minimum 0.00001"),
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

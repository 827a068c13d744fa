"""Order and routing refusals are `DomainError`s with stable codes and statuses (issue 13 item 3): the API
answers them through its one handler, and each names the order field at fault where there is one."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from models.market import BestExecutionRecord, OrderType, RefusalReason, Side
from models.order_flow import OrderRequest
from services.errors import DomainError
from services.orders import OrderRejected, validate
from services.router import (
    InvalidRouteRequest,
    NoHealthyProvider,
    NoLiquidity,
    RoutingRefused,
    SlippageExceeded,
    UnpriceableSize,
)

D = Decimal


def order(**change: object) -> OrderRequest:
    fields: dict[str, object] = {
        "order_id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "symbol": "BTC-GBP",
        "side": Side.BUY,
        "type": OrderType.MARKET,
        "quote_amount": D("1000"),
    }
    return OrderRequest.model_validate({**fields, **change})


def refused_record(refusal: RefusalReason) -> BestExecutionRecord:
    return BestExecutionRecord(
        symbol="BTC-GBP",
        side=Side.BUY,
        max_slippage=D("0.01"),
        refusal=refusal,
        reason="binance: HTTPError 502 <html>bad gateway</html>",
    )


@pytest.mark.parametrize(
    ("error", "code", "status"),
    [
        (InvalidRouteRequest("give exactly one of amount or quote_amount"), "invalid_size", 422),
        (UnpriceableSize("a has no asks"), "unpriceable_size", 422),
        (NoHealthyProvider(refused_record(RefusalReason.NO_HEALTHY_PROVIDER)), "market_unavailable", 503),
        (NoLiquidity(refused_record(RefusalReason.NO_LIQUIDITY), D("1")), "no_liquidity", 422),
        (
            SlippageExceeded(refused_record(RefusalReason.SLIPPAGE_EXCEEDED), D("0.05"), D("0.01")),
            "slippage_exceeded",
            422,
        ),
        (OrderRejected("kyc_limit_exceeded", "KYC tier 1 allows £1000"), "kyc_limit_exceeded", 422),
    ],
)
def test_refusals_are_domain_errors_with_stable_codes(error: DomainError, code: str, status: int) -> None:
    assert isinstance(error, DomainError)
    assert (error.code, error.status) == (code, status)
    if isinstance(error, RoutingRefused):
        assert "binance" not in error.detail and "html" not in error.detail  # our words, never the venue's
        assert "binance" in error.record.reason  # kept for staff


def test_an_order_rejection_keeps_the_sagas_code_and_reason() -> None:
    e = OrderRejected("account_frozen", "the account is frozen")
    assert (e.code, e.reason, e.detail, str(e)) == (
        "account_frozen",
        "the account is frozen",
        *(2 * [e.reason]),
    )
    assert e.field is None


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"symbol": "DOGE-GBP"}, "symbol", "unknown_symbol"),
        ({"amount": D("0.01")}, "amount", "invalid_size"),
        ({"side": Side.SELL}, "quote_amount", "invalid_size"),
        ({"quote_amount": D("10.001")}, "quote_amount", "invalid_precision"),
        ({"price": D("68000")}, "price", "invalid_price"),
        ({"max_slippage": D("0.9")}, "max_slippage", "invalid_slippage"),
        ({"quote_amount": D("1.00")}, "quote_amount", "order_too_small"),
        ({"quote_amount": None, "amount": D("0.00012345")}, "amount", "invalid_lot_size"),
        ({"type": OrderType.LIMIT, "quote_amount": None, "amount": D("0.01")}, "price", "invalid_price"),
    ],
)
def test_validation_names_the_field_at_fault(change: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(OrderRejected) as refused:
        validate(order(**change))
    assert (refused.value.field, refused.value.code) == (field, code)

"""The one public API shape (issue 13 item 7): one money formatter, enums in any case, one cursor codec."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel

from models.market import OrderType, Side, TimeInForce
from models.money import money, money_or_none, plain
from models.order_flow import OrderStatus
from services.pagination import InvalidCursor, decode_keyset, encode_keyset

D = Decimal


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        ("1.5", "GBP", "1.50"),
        ("0", "GBP", "0.00"),
        ("1E+3", "GBP", "1000.00"),
        ("5.100000000000000000", "GBP", "5.10"),  # NUMERIC(36,18) as stored
        ("-2.1", "GBP", "-2.10"),
        ("0.00001", "BTC", "0.00001000"),
        ("0E-18", "ETH", "0.00000000"),
        ("67950.12345", "GBP", "67950.12345"),  # finer than the scale: shown exactly, never rounded
    ],
)
def test_money_is_a_string_at_the_asset_scale(value: str, currency: str, shown: str) -> None:
    assert money(D(value), currency) == shown
    assert D(money(D(value), currency)) == D(value)


def test_fractions_and_missing_amounts() -> None:
    assert plain(D("0.0100")) == "0.01" and plain(D("1E+2")) == "100" and plain(D("0")) == "0"
    assert money_or_none(None, "GBP") is None


@pytest.mark.parametrize("enum", [Side, OrderType, TimeInForce, OrderStatus])
def test_api_enums_accept_any_case_and_answer_in_one(enum: type[Side]) -> None:
    for member in enum:
        for spelled in (member.value, member.value.lower(), member.value.capitalize()):
            assert enum(spelled) is member

    class Body(BaseModel):
        value: enum  # type: ignore[valid-type]

    first = next(iter(enum))
    parsed = Body.model_validate_json(json.dumps({"value": first.value.lower()}))
    assert parsed.value is first and parsed.model_dump(mode="json") == {"value": first.value}
    with pytest.raises(ValueError):
        enum("no-such-value")


def test_the_cursor_codec_round_trips_and_refuses_what_we_did_not_issue() -> None:
    at, row_id = datetime(2026, 12, 1, 20, 0, 0, 123456, tzinfo=UTC), uuid.uuid4()
    assert decode_keyset(encode_keyset(at, row_id)) == (at, row_id)
    forged = [
        "not base64!",
        base64.urlsafe_b64encode(b"[]").decode(),
        base64.urlsafe_b64encode(b'["x"]').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'["2024-01-01T00:00:00", 5]').decode(),
        base64.urlsafe_b64encode(b"null").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b'["2024-01-01T00:00:00"]').decode(),
    ]
    for cursor in forged:
        with pytest.raises(InvalidCursor) as refused:
            decode_keyset(cursor)
        assert (refused.value.code, refused.value.status, refused.value.field) == (
            "invalid_cursor",
            422,
            "query.cursor",
        )


def test_the_ledger_refuses_a_forged_cursor_with_the_one_codec_refusal() -> None:
    """`services.ledger.InvalidCursor` is the codec's own class: one refusal, one answer, whoever pages."""
    from services import ledger

    assert ledger.InvalidCursor is InvalidCursor

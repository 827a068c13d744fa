"""Customers read each venue's verdict in our words, never the venue's text the stored record keeps."""

from __future__ import annotations

from decimal import Decimal

from models.market import BestExecutionRecord, QuoteOutcome, QuoteSeen, Side
from services.order_reasons import public_record


def test_a_customer_sees_our_verdict_not_the_venues_error_text() -> None:
    venue_text = (
        "kraken BTC-GBP book stale since 2026-12-01T17:00:00Z; REST re-read failed (<html>502</html>)"
    )
    record = BestExecutionRecord(
        symbol="BTC-GBP",
        side=Side.BUY,
        requested_amount=Decimal("0.1"),
        max_slippage=Decimal("0.01"),
        quotes=[
            QuoteSeen(
                provider="kraken",
                outcome=QuoteOutcome.ERROR,
                reason=venue_text,
                verdict=f"not priced: {venue_text}",
            )
        ],
    )
    seen = public_record(record).quotes[0]
    assert seen.verdict == "not priced: venue unavailable"
    assert record.quotes[0].verdict is not None and "502" in record.quotes[0].verdict  # staff keep the detail

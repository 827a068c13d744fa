"""What a customer is told about an order: our own words, from a small fixed vocabulary (issue 12 item 12).

Venues answer in their own text (error codes, HTML error pages, internal messages). That text is for
staff: it stays in the order's stored best-execution record (`orders.execution_record`, with a failed
placement's detail under `staff_detail`) and in the logs. Customers see the order's `reason` and
`GET /orders/{id}/execution` only through this module.
"""

from __future__ import annotations

from models.market import BestExecutionRecord, QuoteOutcome, QuoteSeen, RefusalReason
from models.order_flow import OrderStatus

REFUSED: dict[RefusalReason, str] = {
    RefusalReason.NO_HEALTHY_PROVIDER: "no venue could price the order just now; try again shortly",
    RefusalReason.NO_LIQUIDITY: "the venues do not have enough liquidity for this size",
    RefusalReason.SLIPPAGE_EXCEEDED: "the best available price is beyond your maximum slippage",
}
NOT_ROUTED = "the order could not be routed just now; try again shortly"
NOT_EXECUTED = "no venue could execute the order; nothing was charged and the funds were released"
QUOTE_OUTCOMES: dict[QuoteOutcome, str | None] = {
    QuoteOutcome.OK: None,
    QuoteOutcome.NO_LIQUIDITY: "not enough liquidity at this venue",
    QuoteOutcome.ERROR: "venue unavailable",
    QuoteOutcome.TIMEOUT: "venue did not answer in time",
    QuoteOutcome.SKIPPED: "venue not asked",
}


def refusal(code: str) -> str:
    """The customer's reason for a router refusal (`RefusalReason` value)."""
    try:
        return REFUSED[RefusalReason(code)]
    except ValueError:
        return NOT_ROUTED


def public_reason(status: OrderStatus, reason: str | None) -> tuple[str | None, str | None]:
    """(what the customer is told, what only staff see) for a final status set without fills.

    A FAILED order's reason is made of the venues' answers to our placements: the customer gets
    `NOT_EXECUTED`. Other reasons reaching here are ours already (validation, limits, funds, the
    router's refusal in `REFUSED`'s words, the customer's own cancel reason).
    """
    if status is OrderStatus.FAILED:
        return NOT_EXECUTED, reason
    return reason, None


def public_record(record: BestExecutionRecord) -> BestExecutionRecord:
    """The best-execution record as a customer sees it: every number, none of the venues' text."""
    quotes = [
        q.model_copy(update={"reason": QUOTE_OUTCOMES.get(q.outcome), "verdict": _public_verdict(q, record)})
        for q in record.quotes
    ]
    if record.refusal is not None:
        reason = REFUSED.get(record.refusal, NOT_ROUTED)
    elif record.legs:
        venues = ", ".join(leg.provider for leg in record.legs)
        route = record.route.value if record.route else "single"
        reason = f"{route} route to {venues}: the best all-in price among the venues that answered"
    else:
        reason = ""
    return record.model_copy(update={"quotes": quotes, "reason": reason})


def _public_verdict(q: QuoteSeen, record: BestExecutionRecord) -> str:
    """A venue's verdict in our words (the stored one may quote the venue's errors)."""
    if any(leg.provider == q.provider for leg in record.legs):
        return "won: the best all-in price"
    if q.quote is None:
        return f"not priced: {QUOTE_OUTCOMES.get(q.outcome) or 'no price'}"
    if record.refusal is not None:
        return "priced, but the order was refused"
    if not q.quote.fully_filled:
        return "lost: not enough liquidity at this venue for the size"
    return "lost: a better all-in price elsewhere"

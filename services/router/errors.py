"""Why the router cannot route: `DomainError`s with stable codes, answered by the API's one handler.

A refusal's `detail` is in our words (`services.order_reasons`): the venues' own text stays in `record`
(stored with the order, for staff), never in what a customer reads.
"""

from __future__ import annotations

from decimal import Decimal

from models.market import BestExecutionRecord, RefusalReason
from services.errors import DomainError
from services.order_reasons import NOT_ROUTED, REFUSED

RETRY_AFTER_S = 5


class InvalidRouteRequest(DomainError, ValueError):
    """The request itself is malformed (both or neither size given, non-positive size, finer than the
    asset's scale). Reject it; asking again with the same size cannot succeed."""

    default_code = "invalid_size"
    status = 422


class UnpriceableSize(DomainError, ValueError):
    """This book cannot price the size at all (empty side, or a budget below one base unit). Ask another
    venue, or a larger size."""

    default_code = "unpriceable_size"
    status = 422


class RoutingRefused(DomainError):
    """Nothing can fill the order within the customer's limits. Reject the order; store `record`.

    Subclasses say why; `record.refusal` carries the same reason for storage and the API.
    """

    default_code = "routing_refused"
    status = 422
    reason: RefusalReason | None = None

    def __init__(self, record: BestExecutionRecord) -> None:
        refusal = record.refusal or self.reason
        super().__init__(REFUSED.get(refusal, NOT_ROUTED) if refusal is not None else NOT_ROUTED)
        self.record = record


class NoHealthyProvider(RoutingRefused):
    """No venue answered (all failed, timed out, or had an open breaker). Retry later."""

    default_code = "market_unavailable"
    status = 503
    reason = RefusalReason.NO_HEALTHY_PROVIDER

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)}


class NoLiquidity(RoutingRefused):
    """All answering books together cannot fill the size. Offer a smaller order."""

    default_code = "no_liquidity"
    reason = RefusalReason.NO_LIQUIDITY

    def __init__(self, record: BestExecutionRecord, available: Decimal) -> None:
        super().__init__(record)
        self.available = available  # base amount all books together could fill


class SlippageExceeded(RoutingRefused):
    """The best possible fill is worse than the customer's maximum slippage. Offer a re-quote."""

    default_code = "slippage_exceeded"
    reason = RefusalReason.SLIPPAGE_EXCEEDED

    def __init__(self, record: BestExecutionRecord, expected: Decimal, limit: Decimal) -> None:
        super().__init__(record)
        self.expected = expected
        self.limit = limit

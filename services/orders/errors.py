"""Why an order is refused: one `DomainError` per concept, so the API answers them through its one handler
and the order activities map them to the saga's `OrderRejected` failure.
"""

from __future__ import annotations

from services.errors import DomainError


class OrderRejected(DomainError):
    """The order is refused; `code` is stable (tests, the API and the saga rely on it), `reason` is for
    people. Tell the customer the reason; nothing was written or held for this order.

    `field` names the order field at fault (`amount`, `price` …) when one is; `None` for refusals about
    the customer (KYC tier, trading limit, frozen account).
    """

    default_code = "order_rejected"
    status = 422

    def __init__(self, code: str, reason: str, *, field: str | None = None) -> None:
        super().__init__(reason, code=code, field=field)

    @property
    def reason(self) -> str:
        return self.detail


class FillConflict(Exception):
    """A venue order id is already booked for another of our orders. Stop and investigate."""

"""Inputs, outputs and state of the order saga (pydantic: they cross Temporal and HTTP unchanged).

New fields always get defaults, so histories recorded before a change stay replayable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from models.enums import CaseInsensitiveEnum
from models.market import (
    BestExecutionRecord,
    ExecutionLeg,
    OrderType,
    Side,
    TimeInForce,
    VenueOrder,
)


class OrderStatus(CaseInsensitiveEnum):
    PENDING = "PENDING"  # accepted, not yet routed
    ROUTED = "ROUTED"  # quoted and funds reserved
    OPEN = "OPEN"  # a limit order resting at the venue
    PARTIALLY_FILLED = "PARTIALLY_FILLED"  # final for a market order that filled in part
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"  # refused before anything reached a venue (limits, funds, no route)
    FAILED = "FAILED"  # no venue accepted it
    # A placement's outcome is still unknown after the configured bound: ops are alerted, the hold is
    # kept, and the saga keeps asking the venue (or waits for an ops resolution). Not final.
    NEEDS_ATTENTION = "NEEDS_ATTENTION"

    @property
    def final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        OrderStatus.FILLED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.EXPIRED,
        OrderStatus.REJECTED,
        OrderStatus.FAILED,
    }
)


class OrderRequest(BaseModel):
    """What the customer asked for; the saga's input. `order_id` is the business key."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    symbol: str
    side: Side
    type: OrderType
    amount: Decimal | None = None  # base amount
    quote_amount: Decimal | None = None  # market buys only: spend this much quote currency
    price: Decimal | None = None  # limit price
    max_slippage: Decimal | None = None  # fraction; None: the configured default
    time_in_force: TimeInForce = TimeInForce.GTC
    expires_at: datetime | None = None  # good-till-date for limit orders
    poll_interval_s: float = 5.0  # how often a resting limit order is checked at the venue
    created_by: uuid.UUID | None = None
    polls_per_run: int = 500  # a resting order continues as a new run after this many checks
    resume: RestingOrder | None = None  # set by continue-as-new: the order is already resting


class AcceptResult(BaseModel):
    status: OrderStatus
    kyc_tier: int


class ReserveRequest(BaseModel):
    order: OrderRequest
    record: BestExecutionRecord


class Reservation(BaseModel):
    hold_id: uuid.UUID
    hold_currency: str
    hold_amount: Decimal
    notional_gbp: Decimal
    price_cap: Decimal  # buys: no placement may pay more per unit; sells: receive less
    fee_rate: Decimal  # the customer's taker rate at the time of the order


class PlaceRequest(BaseModel):
    order_id: uuid.UUID
    attempt: int
    symbol: str
    side: Side
    type: OrderType
    leg: ExecutionLeg
    price: Decimal  # protective limit (market) or the customer's limit (limit orders)
    time_in_force: TimeInForce


class QuoteRequest(BaseModel):
    order: OrderRequest
    amount: Decimal | None = None  # overrides the order's size (fallback for one leg)
    exclude: list[str] = Field(default_factory=list)


class SettleRequest(BaseModel):
    """Venue orders as last seen. Settlement books whatever filled beyond what was settled before."""

    order_id: uuid.UUID
    user_id: uuid.UUID
    symbol: str
    side: Side
    reservation: Reservation
    venue_orders: list[VenueOrder]
    maker: bool = False  # fills after the order rested are charged the maker rate
    final: bool = True  # release what the hold did not consume
    status: OrderStatus | None = None  # the order's status after this step (computed if None)
    reason: str | None = None


class SettleResult(BaseModel):
    status: OrderStatus
    filled_amount: Decimal
    filled_quote: Decimal
    average_price: Decimal | None
    fee: Decimal
    settled_now: bool  # False when nothing new filled (or a replay)


class MarkRequest(BaseModel):
    order_id: uuid.UUID
    status: OrderStatus
    reason: str | None = None
    hold_id: uuid.UUID | None = None  # released, if given
    record: BestExecutionRecord | None = None


class ResolveRequest(BaseModel):
    """Ask a venue for the order sent as attempt `attempt` of `order_id` (by its client order id)."""

    order_id: uuid.UUID
    attempt: int
    provider: str
    symbol: str
    # When the outcome became unknown (the workflow's clock): the venue's trade history is searched
    # from a little before it, and the attention bound is measured from it.
    unknown_since: datetime | None = None
    checks: int = 0  # lookups already made for this placement (sets the back-off)


class PlacementLookup(BaseModel):
    """One round of resolving an unknown placement, with the worker's policy for the next round."""

    order: VenueOrder | None = None  # the venue shows the order: its outcome is known
    next_check_s: float = 2.0  # wait this long before asking again
    needs_attention: bool = False  # still unknown past the configured bound: flag it for ops


class PlacementResolution(BaseModel):
    """Ops' word on a placement the venue has not shown (the `resolve_placement` signal or update).

    Either the venue's order id ops found (the saga reads that order and goes on), or `absent=True`
    once ops have established with the venue that it never received the order (the saga then treats
    the placement as refused and may use another venue).

    It counts only with `token`: a decision token (services/decision_tokens.py) signed for `staff_id`
    after a TOTP check, for this order and action (`placement_found` bound to `provider_order_id`,
    `placement_absent` bound to `note`), by the admin API or `python -m cli approval-token`.
    """

    provider_order_id: str | None = None
    absent: bool = False
    resolved_by: str = ""  # free text, kept for old histories; who decided is `staff_id`, proven
    note: str = ""
    staff_id: uuid.UUID | None = None
    token: str = ""

    @property
    def action(self) -> str:
        """The decision-token action this resolution needs ("" if it resolves nothing)."""
        if self.provider_order_id:
            return "placement_found"
        return "placement_absent" if self.absent else ""

    @property
    def proof_detail(self) -> str:
        """What the token binds besides the order and action."""
        return self.provider_order_id or self.note


class ResolutionCheck(BaseModel):
    """Verify ops' resolution of an unknown placement (proof, ops role) and audit it either way."""

    order_id: uuid.UUID
    attempt: int | None = None  # the placement waiting for it (None: none is waiting)
    resolution: PlacementResolution
    reused: bool = False  # the saga has already taken this token


class ResolutionOutcome(BaseModel):
    """Whether ops' resolution counted (the `resolve_placement_checked` update's answer)."""

    accepted: bool
    code: str  # accepted | unproven | not_ops | not_waiting
    detail: str = ""


class VenueOrderRef(BaseModel):
    provider: str
    symbol: str
    provider_order_id: str


class NotifyRequest(BaseModel):
    order_id: uuid.UUID


class OrderState(BaseModel):
    """What the `state` query returns (and the workflow's result)."""

    order_id: uuid.UUID
    status: OrderStatus = OrderStatus.PENDING
    reason: str | None = None
    filled_amount: Decimal = Decimal(0)
    filled_quote: Decimal = Decimal(0)
    average_price: Decimal | None = None
    fee: Decimal = Decimal(0)
    providers: list[str] = Field(default_factory=list)
    provider_order_ids: list[str] = Field(default_factory=list)
    cancel_requested: bool = False
    attempts: int = 0


class RestingOrder(BaseModel):
    """What a resting limit order carries into its next run (continue-as-new keeps histories short)."""

    reservation: Reservation
    venue_order: VenueOrder
    attempts: int
    providers: list[str]
    provider_order_ids: list[str]


class CancelRequest(BaseModel):
    reason: str = "cancelled by customer"
    requested_by: uuid.UUID | None = None


OrderRequest.model_rebuild()

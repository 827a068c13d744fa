"""Settlement of an order's fills: what the ledger books for each fill, written once.

The rules (all amounts exact Decimals; rounding by `models.assets.round_for_house`):

    BUY  base B for quote Q at venue V, customer fee rate r:
        customer quote   -(ceil(Q) + ceil(Q*r))    paid from the hold
        customer base    +B
        provider:V quote +ceil(Q)                  (what we spent at the venue)
        provider:V base  -B                        (what the venue now holds for us)
        fee_revenue      +ceil(Q*r)
    SELL base B for quote Q:
        customer base    -B                        paid from the hold
        customer quote   +(floor(Q) - ceil(Q*r))
        provider:V base  +B
        provider:V quote -floor(Q)
        fee_revenue      +ceil(Q*r)
    The venue's own fee F (in whatever asset it charged) is the house's cost:
        provider:V +ceil(F), fee_revenue -ceil(F)  (in that asset)

House accounts are seen from the liability side (our assets are negative), so every posting sums to
zero per currency. Rounding a venue amount to our scale always goes the house's way; the few pence of
difference between `provider:V` and the venue's exact balance are reconciliation tolerance.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from models.assets import SCALES, Direction, quantum, round_for_house
from models.market import Side, split_symbol
from services.ledger import House, HouseAccount, Leg, Posting
from services.orders.prices import ZERO

# Rounding dust the house absorbs in one settlement without alerting ops, in units of the hold
# currency's smallest amount (one per fill and per fee, over a few fills).
DUST_QUANTA = 10


@dataclass(frozen=True)
class Increment:
    """What filled at one venue order since the last settlement."""

    provider: str
    provider_order_id: str
    client_order_id: str | None
    cumulative_amount: Decimal
    cumulative_quote: Decimal
    cumulative_fee: Decimal
    amount: Decimal
    quote: Decimal
    fee: Decimal
    fee_currency: str | None
    raw: dict[str, Any]
    status: str


def settlement_legs(
    *,
    side: Side,
    symbol: str,
    quote_account: uuid.UUID,
    base_account: uuid.UUID,
    hold_id: uuid.UUID,
    increments: list[Increment],
    fee_rate: Decimal,
) -> tuple[list[Leg], Decimal]:
    """Ledger legs for the increments, merged per account and currency; and the customer fee charged."""
    base, quote = split_symbol(symbol)
    sums: dict[tuple[object, str, uuid.UUID | None], Decimal] = defaultdict(Decimal)
    total_fee = ZERO
    fee_rev = House(HouseAccount.FEE_REVENUE)
    for inc in increments:
        if inc.amount <= 0:
            continue
        provider = House(HouseAccount.provider(inc.provider))
        fee_c = round_for_house(quote, inc.quote * fee_rate, Direction.CUSTOMER_PAYS)
        total_fee += fee_c
        if side is Side.BUY:
            paid = round_for_house(quote, inc.quote, Direction.CUSTOMER_PAYS)
            got = round_for_house(base, inc.amount, Direction.CUSTOMER_RECEIVES)
            sums[(quote_account, quote, hold_id)] -= paid + fee_c
            sums[(base_account, base, None)] += got
            sums[(provider, quote, None)] += paid
            sums[(provider, base, None)] -= got
        else:
            sold = inc.amount  # already at the base scale: it is the size we sent
            received = round_for_house(quote, inc.quote, Direction.CUSTOMER_RECEIVES)
            sums[(base_account, base, hold_id)] -= sold
            sums[(quote_account, quote, None)] += received - fee_c
            sums[(provider, base, None)] += sold
            sums[(provider, quote, None)] -= received
        sums[(fee_rev, quote, None)] += fee_c
        if inc.fee > 0 and inc.fee_currency:
            if inc.fee_currency not in SCALES:
                raise ValueError(f"venue fee in {inc.fee_currency}, which we do not hold")
            venue_fee = round_for_house(inc.fee_currency, inc.fee, Direction.CUSTOMER_PAYS)
            sums[(provider, inc.fee_currency, None)] += venue_fee
            sums[(fee_rev, inc.fee_currency, None)] -= venue_fee
    legs = [
        Leg(account, currency, amount, hold_id=hold)  # type: ignore[arg-type]
        for (account, currency, hold), amount in sums.items()
        if amount != 0
    ]
    return legs, total_fee


def fit_to_hold(legs: list[Leg], hold_id: uuid.UUID, left: Decimal) -> tuple[list[Leg], Decimal]:
    """Make a settlement's customer debit fit what is left of the order's hold; the house pays the rest.

    The hold is sized for the order's total at one rounding (`plan_reservation`), while each fill is
    rounded on its own (`settlement_legs`): several fills can cost the customer a penny or two more
    than the hold. After a venue has filled, settlement must not fail for a business reason (the
    trade happened), and the customer never pays more than we reserved, so that dust is debited from
    the house's `rounding` account instead. Returns the legs and the amount the house absorbed.
    """
    out: list[Leg] = []
    absorbed = ZERO
    for leg in legs:
        if leg.hold_id != hold_id or -leg.amount <= left:
            if leg.hold_id == hold_id:
                left += leg.amount
            out.append(leg)
            continue
        excess = -leg.amount - max(left, ZERO)
        if left > 0:
            out.append(Leg(leg.account, leg.currency, -left, hold_id=hold_id))
        out.append(Leg(House(HouseAccount.ROUNDING), leg.currency, -excess))
        absorbed += excess
        left = ZERO
    return out, absorbed


def is_dust(currency: str, amount: Decimal) -> bool:
    """Small enough to be rounding (see `DUST_QUANTA`), not a fill beyond what was reserved."""
    return amount <= quantum(currency) * DUST_QUANTA


def settlement_posting(
    *,
    order_id: uuid.UUID,
    legs: list[Leg],
    increments: list[Increment],
    final: bool,
    created_by: uuid.UUID | None,
) -> Posting:
    """The step name is derived from the cumulative fills it books, so a retry replays the same key."""
    marks = ",".join(
        sorted(f"{i.provider}:{i.provider_order_id}:{i.cumulative_amount.normalize()}" for i in increments)
    )
    return Posting(
        reference_type="ORDER",
        reference_id=order_id,
        step=f"settle:{marks}",
        kind="trade",
        legs=legs,
        close_holds=final,
        created_by=created_by,
        metadata={"fills": marks},
    )

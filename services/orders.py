"""Order domain logic: validation, trading limits, reservations and settlement (seed §4, §C.6).

No Temporal and no HTTP here; the order activities call these functions, and the API uses the same
validation so a bad order is refused before a workflow starts.

Settlement, written once (all amounts exact Decimals; rounding by `models.assets.round_for_house`):

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, localcontext
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.assets import (
    SCALES,
    Direction,
    PrecisionError,
    UnknownCurrency,
    check_scale,
    quantum,
    round_for_house,
)
from models.market import SYMBOLS, BestExecutionRecord, OrderType, Side, VenueOrder, split_symbol
from models.order_flow import FINAL_STATUSES, OrderRequest, OrderStatus, Reservation
from services.ledger import House, HouseAccount, Leg, Posting

# Seed §C.6: rolling 24 h trading limit per KYC tier, in GBP.
TRADING_LIMITS_GBP: dict[int, Decimal] = {
    0: Decimal(0),
    1: Decimal("1000"),
    2: Decimal("10000"),
    3: Decimal("100000"),
}
# Orders in these states count towards the rolling limit (what was refused or never placed does not).
COUNTED_STATUSES = ("ROUTED", "NEEDS_ATTENTION", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "EXPIRED")
PRICE_PLACES = 8
_PRICE_Q = Decimal(1).scaleb(-PRICE_PLACES)
ZERO = Decimal(0)
# Rounding dust the house absorbs in one settlement without alerting ops, in units of the hold
# currency's smallest amount (one per fill and per fee, over a few fills).
DUST_QUANTA = 10


@dataclass(frozen=True)
class SizeRules:
    """What every venue we route a symbol to can trade (issue 11 items 3-4).

    `lot_step` is a multiple of each exchange's lot step, so an amount on it is sent whole everywhere;
    an amount off it is refused at the API (naming the step) instead of being rounded down silently.
    """

    lot_step: Decimal  # base
    min_amount: Decimal  # base
    max_amount: Decimal  # base: far above any book's depth, below any absurd input
    min_notional: Decimal = Decimal("5")  # GBP: the venues' minimum order value


SIZE_RULES: dict[str, SizeRules] = {
    # Minimums are the largest of the venues' (Kraken's), so any venue can take the order or its fallback.
    "BTC-GBP": SizeRules(Decimal("0.00001"), Decimal("0.00005"), Decimal("100")),
    "ETH-GBP": SizeRules(Decimal("0.0001"), Decimal("0.002"), Decimal("2000")),
    "BNB-GBP": SizeRules(Decimal("0.001"), Decimal("0.02"), Decimal("10000")),
}
# No KYC tier may trade more than this in 24 h, so no single order may be worth more.
MAX_ORDER_GBP = max(TRADING_LIMITS_GBP.values())


class OrderRejected(Exception):
    """The order is refused; `code` is stable (tests and the API rely on it), `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class FillConflict(Exception):
    """A venue order id is already booked for another of our orders. Stop and investigate."""


def validate(req: OrderRequest) -> None:
    """Shape checks that need no database: symbol, sizes, prices, their scales."""
    if req.symbol not in SYMBOLS:
        raise OrderRejected("unknown_symbol", f"unknown symbol {req.symbol}; we trade {', '.join(SYMBOLS)}")
    base, quote = split_symbol(req.symbol)
    if (req.amount is None) == (req.quote_amount is None):
        raise OrderRejected("invalid_size", "give exactly one of amount (base) or quote_amount")
    if req.quote_amount is not None and not (req.type is OrderType.MARKET and req.side is Side.BUY):
        raise OrderRejected("invalid_size", "quote_amount is only for market buys; give amount")
    for name, value, currency in (("amount", req.amount, base), ("quote_amount", req.quote_amount, quote)):
        if value is None:
            continue
        if value <= 0:
            raise OrderRejected("invalid_size", f"{name} must be positive")
        try:
            check_scale(currency, value)
        except (PrecisionError, UnknownCurrency) as e:
            raise OrderRejected("invalid_precision", str(e)) from e
    if req.type is OrderType.LIMIT:
        if req.price is None or req.price <= 0:
            raise OrderRejected("invalid_price", "a limit order needs a positive price")
        if req.price != req.price.quantize(_PRICE_Q, rounding=ROUND_FLOOR):
            raise OrderRejected("invalid_precision", f"price has more than {PRICE_PLACES} decimal places")
    elif req.price is not None:
        raise OrderRejected("invalid_price", "a market order takes no price; use max_slippage")
    if req.max_slippage is not None and not (Decimal(0) <= req.max_slippage <= Decimal("0.5")):
        raise OrderRejected("invalid_slippage", "max_slippage must be between 0 and 0.5")
    _check_size(req, SIZE_RULES[req.symbol], base, quote)


def _check_size(req: OrderRequest, rules: SizeRules, base: str, quote: str) -> None:
    """Size bounds per symbol: cheap, before anything else is asked (issue 11 item 4)."""
    if req.amount is not None:
        if req.amount > rules.max_amount:
            raise OrderRejected(
                "order_too_large",
                f"amount {req.amount} {base} is above the maximum {rules.max_amount}",
            )
        if req.amount < rules.min_amount:
            raise OrderRejected(
                "order_too_small",
                f"amount {req.amount} {base} is below the minimum {rules.min_amount}",
            )
        if req.amount % rules.lot_step != 0:
            raise OrderRejected(
                "invalid_lot_size",
                f"amount must be a multiple of {rules.lot_step} {base}: the venues trade {base} in steps of "
                f"{rules.lot_step}",
            )
    value = value_floor(req)
    if value is None:
        return
    if value > MAX_ORDER_GBP:
        raise OrderRejected(
            "order_too_large", f"the order is worth at least {value} {quote}; no account may trade more "
            f"than {MAX_ORDER_GBP} {quote} in 24 h"
        )  # fmt: skip
    if value < rules.min_notional:
        raise OrderRejected(
            "order_too_small",
            f"the order is worth {value} {quote}, below the minimum {rules.min_notional}",
        )


def value_floor(req: OrderRequest) -> Decimal | None:
    """The least the order is worth in the quote currency, known without asking a venue.

    `quote_amount`, or amount x limit price. A limit sell can fill above its price, so this is a lower
    bound: limits and the second factor use `fill_value` once the book is known.
    """
    if req.quote_amount is not None:
        return req.quote_amount
    if req.type is OrderType.LIMIT and req.price is not None and req.amount is not None:
        return req.amount * req.price
    return None


def fill_value(req: OrderRequest, best_price: Decimal | None) -> Decimal | None:
    """The most the order can really trade for, in the quote currency, for limits and the second factor
    (issue 12 item 2); None when that needs a price and `best_price` is None.

    `best_price` is the touch a market order of this side meets now (best ask for a buy, best bid for a
    sell). A buy never pays more than its limit, so amount x limit price bounds it; a limit sell fills
    at its price *or better*, so a sell priced at £50 is worth what the bids pay, not £50.
    """
    if req.quote_amount is not None:
        return req.quote_amount
    assert req.amount is not None
    if req.type is OrderType.LIMIT and req.price is not None:
        if req.side is Side.BUY:
            return req.amount * req.price
        return req.amount * max(req.price, best_price) if best_price is not None else None
    return req.amount * best_price if best_price is not None else None


def funds_needed(req: OrderRequest, fee_rate: Decimal) -> tuple[str, Decimal] | None:
    """(currency, amount) the customer must have available, when known without a price.

    A sell needs its base amount; a buy of `quote_amount` needs that amount (fee included); a limit buy
    its size at the limit plus the fee. A market buy by base amount needs a price: the reservation,
    after the quote, checks it.
    """
    base, quote = split_symbol(req.symbol)
    if req.side is Side.SELL:
        return (base, req.amount) if req.amount is not None else None
    if req.quote_amount is not None:
        return quote, req.quote_amount
    if req.type is OrderType.LIMIT and req.price is not None and req.amount is not None:
        most = req.amount * req.price
        pays = Direction.CUSTOMER_PAYS
        return quote, round_for_house(quote, most, pays) + round_for_house(quote, most * fee_rate, pays)
    return None


def _ceil_price(p: Decimal) -> Decimal:
    return p.quantize(_PRICE_Q, rounding=ROUND_CEILING)


def _floor_price(p: Decimal) -> Decimal:
    return p.quantize(_PRICE_Q, rounding=ROUND_FLOOR)


def protective_price(side: Side, reference_price: Decimal, max_slippage: Decimal) -> Decimal:
    """A market order's IOC limit: the reference price moved by the customer's slippage tolerance, to
    `PRICE_PLACES` decimals (the venue adapter then rounds it onto its tick towards the customer)."""
    if side is Side.BUY:
        return _ceil_price(reference_price * (1 + max_slippage))
    return _floor_price(reference_price * (1 - max_slippage))


def size_quote_budget(
    record: BestExecutionRecord,
    *,
    quote_amount: Decimal,
    price_cap: Decimal,
    fee_rate: Decimal,
    lot_step: Callable[[str], Decimal],
) -> BestExecutionRecord:
    """Size a market buy of `quote_amount` so that cost plus fee never exceeds it (issue 11 item 5).

    `quote_amount` means "spend at most this much, fee included". Every placement is an IOC limited to
    `price_cap`, so the most any base amount A can cost is A x cap, plus our fee on that, each rounded
    up to the penny: the order buys the largest A (on every venue's lot step) for which that is within
    the budget. The hold is then at most `quote_amount` and the debit at most the hold; what a fill
    below the cap saves is simply not spent. The router's legs (priced on the budget before fees) are
    scaled down to that size.
    """
    base, quote = split_symbol(record.symbol)
    q = quantum(quote)
    budget = quote_amount - 2 * q  # one rounding up for the cost, one for the fee
    with localcontext(prec=60, rounding=ROUND_FLOOR):
        most = (budget / (price_cap * (1 + fee_rate))).quantize(quantum(base), rounding=ROUND_FLOOR)
    if record.amount <= most:
        return record
    legs = []
    remaining = most
    for leg in record.legs:
        share = min(remaining, (leg.amount * most / record.amount) if record.amount else ZERO)
        step = lot_step(leg.provider)
        amount = (share / step).to_integral_value(rounding=ROUND_FLOOR) * step
        if amount <= 0:
            continue
        remaining -= amount
        legs.append(
            leg.model_copy(
                update={
                    "amount": amount,
                    "quote_amount": round_for_house(
                        quote, amount * leg.average_price, Direction.CUSTOMER_PAYS
                    ),
                    "fee": round_for_house(
                        quote, amount * leg.average_price * leg.fee_rate, Direction.CUSTOMER_PAYS
                    ),
                }
            )
        )
    if not legs:
        raise OrderRejected(
            "invalid_size",
            f"{quote_amount} {quote} does not buy one lot of {base} with the fee at the protective price "
            f"{price_cap}",
        )
    total = sum((leg.amount for leg in legs), ZERO)
    return record.model_copy(
        update={
            "legs": legs,
            "amount": total,
            "quote_amount": sum((leg.quote_amount for leg in legs), ZERO),
            "fee": sum((leg.fee for leg in legs), ZERO),
            "reason": f"{record.reason}; sized to {total} {base} so that cost plus our fee at the protective "
            f"price {price_cap} stays within {quote_amount} {quote}",
        }
    )


def plan_reservation(
    req: OrderRequest,
    *,
    expected_amount: Decimal,
    expected_quote: Decimal,
    reference_price: Decimal,
    fee_rate: Decimal,
    max_slippage: Decimal,
) -> tuple[str, Decimal, Decimal, Decimal]:
    """(hold currency, hold amount, price cap, GBP notional) for an order.

    A buy reserves the most it could cost: its size at the price cap (the reference price plus the
    slippage allowance, or the customer's limit) plus the customer fee on that, rounded up. Every
    placement is an IOC limited to the cap, so no fill, fallback included, can cost more than the hold.
    A sell reserves the base amount it sells.
    """
    base, quote = split_symbol(req.symbol)
    if req.side is Side.BUY:
        cap = (
            req.price
            if req.type is OrderType.LIMIT and req.price
            else protective_price(Side.BUY, reference_price, max_slippage)
        )
        most = expected_amount * cap
        hold = round_for_house(quote, most, Direction.CUSTOMER_PAYS) + round_for_house(
            quote, most * fee_rate, Direction.CUSTOMER_PAYS
        )
        if req.quote_amount is not None:
            # "Spend at most quote_amount, fee included": the size was chosen to fit (size_quote_budget).
            return quote, min(hold, req.quote_amount), cap, req.quote_amount
        notional = expected_quote if req.type is OrderType.MARKET else expected_amount * cap
        return quote, hold, cap, round_for_house(quote, notional, Direction.CUSTOMER_PAYS)
    floor = (
        req.price
        if req.type is OrderType.LIMIT and req.price
        else protective_price(Side.SELL, reference_price, max_slippage)
    )
    assert req.amount is not None
    # A limit sell fills at its price or better: worth what the bids pay now, if that is more.
    notional = expected_quote if req.type is OrderType.MARKET else max(req.amount * floor, expected_quote)
    return base, req.amount, floor, round_for_house(quote, notional, Direction.CUSTOMER_PAYS)


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


# --- database steps (each takes the connection of the activity's transaction) -------------------


async def insert_order(conn: AsyncConnection, req: OrderRequest) -> tuple[OrderStatus, int, str]:
    """Create the order row once; return (status, the customer's KYC tier, the customer's status)."""
    user = (
        await conn.execute(text("SELECT kyc_tier, status FROM users WHERE id = :u"), {"u": req.user_id})
    ).first()
    if user is None:
        raise OrderRejected("unknown_customer", "no such customer")
    await conn.execute(
        text(
            "INSERT INTO orders (id, user_id, symbol, side, type, time_in_force, price, amount, "
            "quote_amount, max_slippage, expires_at, status) "
            "VALUES (:id, :u, :sym, :side, :type, :tif, :price, :amount, "
            ":qa, :slip, :exp, 'PENDING') ON CONFLICT (id) DO NOTHING"
        ),
        {
            "id": req.order_id,
            "u": req.user_id,
            "sym": req.symbol,
            "side": req.side.value,
            "type": req.type.value,
            "tif": req.time_in_force.value,
            "price": req.price,
            "amount": req.amount,
            "qa": req.quote_amount,
            "slip": req.max_slippage,
            "exp": req.expires_at,
        },
    )
    row = (await conn.execute(text("SELECT status FROM orders WHERE id = :id"), {"id": req.order_id})).one()
    return OrderStatus(row[0]), int(user[0]), str(user[1])


async def check_trading_limit(
    conn: AsyncConnection, *, user_id: uuid.UUID, order_id: uuid.UUID, kyc_tier: int, notional_gbp: Decimal
) -> None:
    """Refuse the order if it would take the customer over their tier's rolling 24 h limit.

    The customer's row is locked for the rest of the transaction, so two concurrent orders of one
    customer are counted one after the other, never both against the same headroom. `FOR NO KEY
    UPDATE`, not `FOR UPDATE`: it must not block the foreign-key checks (`FOR KEY SHARE`) of the
    customer's settlements inserting trades and entries, which deadlocked under load.
    """
    await conn.execute(text("SELECT 1 FROM users WHERE id = :u FOR NO KEY UPDATE"), {"u": user_id})
    used = await trading_used(conn, user_id=user_id, order_id=order_id)
    refuse_over_limit(kyc_tier=kyc_tier, used=used, notional_gbp=notional_gbp)


async def trading_used(conn: AsyncConnection, *, user_id: uuid.UUID, order_id: uuid.UUID) -> Decimal:
    """The customer's trading in the last 24 h, other than `order_id`, in GBP."""
    used: Decimal = (
        await conn.execute(
            text(
                # Finished orders count what they filled; live ones the greater of their valuation
                # and what has filled so far (a fill can be worth more than the order was valued).
                "SELECT coalesce(sum(CASE WHEN status IN ('FILLED', 'CANCELLED', 'EXPIRED', "
                "'PARTIALLY_FILLED') THEN filled_quote_amount "
                "ELSE greatest(notional_gbp, filled_quote_amount) END), 0) FROM orders "
                "WHERE user_id = :u AND id <> :o AND created_at > :since AND status = ANY(:counted)"
            ),
            {
                "u": user_id,
                "o": order_id,
                "since": datetime.now(UTC) - timedelta(hours=24),
                "counted": list(COUNTED_STATUSES),
            },
        )
    ).scalar_one()
    return used


def refuse_over_limit(*, kyc_tier: int, used: Decimal, notional_gbp: Decimal) -> None:
    limit = TRADING_LIMITS_GBP.get(kyc_tier, ZERO)
    if used + notional_gbp > limit:
        raise OrderRejected(
            "kyc_limit_exceeded",
            f"KYC tier {kyc_tier} allows £{limit} of trading per 24 h; £{used} used, this order needs "
            f"£{notional_gbp}",
        )


async def mark_routed(
    conn: AsyncConnection, *, order_id: uuid.UUID, reservation: Reservation, record: dict[str, Any]
) -> None:
    await conn.execute(
        text(
            "UPDATE orders SET status = CASE WHEN status = 'PENDING' THEN 'ROUTED' ELSE status END, "
            "notional_gbp = :n, hold_id = :h, execution_record = CAST(:rec AS jsonb), "
            "fee_currency = :fc, updated_at = now() WHERE id = :id"
        ),
        {
            "id": order_id,
            "n": reservation.notional_gbp,
            "h": reservation.hold_id,
            "rec": _json(record),
            "fc": None,
        },
    )


async def set_status(
    conn: AsyncConnection,
    order_id: uuid.UUID,
    status: OrderStatus,
    reason: str | None = None,
    record: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        text(
            "UPDATE orders SET status = CAST(:s AS varchar), reject_reason = coalesce(CAST(:r AS varchar), "
            "reject_reason), execution_record = coalesce(CAST(:rec AS jsonb), execution_record), "
            "updated_at = now(), cancelled_at = CASE WHEN CAST(:s AS varchar) IN ('CANCELLED', 'EXPIRED') "
            "THEN now() ELSE cancelled_at END "
            # A finished order's status stands: a late replay (a stalled worker) cannot rewrite it.
            "WHERE id = :id AND status <> ALL(:final)"
        ),
        {
            "id": order_id,
            "final": sorted(s.value for s in FINAL_STATUSES),
            "s": status.value,
            "r": reason,
            "rec": _json(record) if record is not None else None,
        },
    )


async def add_staff_detail(conn: AsyncConnection, order_id: uuid.UUID, detail: str) -> None:
    """Keep the venues' own text with the order's best-execution record, for staff only."""
    await conn.execute(
        text(
            "UPDATE orders SET execution_record = execution_record || "
            "jsonb_build_object('staff_detail', CAST(:d AS text)) "
            "WHERE id = :id AND execution_record IS NOT NULL"
        ),
        {"id": order_id, "d": detail},
    )


async def increments_since_last(
    conn: AsyncConnection, order_id: uuid.UUID, venue_orders: list[VenueOrder]
) -> list[Increment]:
    """Compare each venue order with its provider_fills row (locked) and upsert the new cumulative."""
    out = []
    for vo in venue_orders:
        prev = (
            await conn.execute(
                text(
                    "SELECT amount, quote_amount, fee, our_order_id FROM provider_fills "
                    "WHERE provider = :p AND provider_order_id = :po FOR UPDATE"
                ),
                {"p": vo.provider, "po": vo.provider_order_id},
            )
        ).first()
        if prev is not None and prev[3] != order_id:
            # A venue never reuses an order id; if it seems to, our records or the venue are wrong.
            raise FillConflict(
                f"{vo.provider} order {vo.provider_order_id} is already recorded for order {prev[3]}"
            )
        p_amount, p_quote, p_fee = (prev[0], prev[1], prev[2]) if prev else (ZERO, ZERO, ZERO)
        if vo.filled <= p_amount:
            continue
        avg = _floor_price(vo.quote_filled / vo.filled) if vo.filled else ZERO
        params = {
            "id": uuid.uuid5(order_id, f"{vo.provider}:{vo.provider_order_id}"),
            "p": vo.provider,
            "po": vo.provider_order_id,
            "co": vo.client_order_id,
            "o": order_id,
            "sym": vo.symbol,
            "side": vo.side.value,
            "a": vo.filled,
            "pr": avg,
            "q": vo.quote_filled,
            "f": vo.fee,
            "fc": vo.fee_currency,
            "st": vo.status.value,
            "raw": _json(vo.raw),
        }
        await conn.execute(
            text(
                "INSERT INTO provider_fills (id, provider, provider_order_id, client_order_id, our_order_id, "
                "symbol, side, amount, price, quote_amount, fee, fee_currency, status, raw_response, "
                "executed_at) VALUES (:id, :p, :po, :co, :o, :sym, :side, :a, :pr, :q, :f, :fc, :st, "
                "CAST(:raw AS jsonb), now()) ON CONFLICT (provider, provider_order_id) DO UPDATE SET "
                "amount = EXCLUDED.amount, price = EXCLUDED.price, quote_amount = EXCLUDED.quote_amount, "
                "fee = EXCLUDED.fee, status = EXCLUDED.status, raw_response = EXCLUDED.raw_response, "
                "executed_at = now()"
            ),
            params,
        )
        out.append(
            Increment(
                provider=vo.provider,
                provider_order_id=vo.provider_order_id,
                client_order_id=vo.client_order_id,
                cumulative_amount=vo.filled,
                cumulative_quote=vo.quote_filled,
                cumulative_fee=vo.fee,
                amount=vo.filled - p_amount,
                quote=vo.quote_filled - p_quote,
                fee=max(vo.fee - p_fee, ZERO),
                fee_currency=vo.fee_currency,
                raw=vo.raw,
                status=vo.status.value,
            )
        )
    return out


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


async def record_trades(
    conn: AsyncConnection,
    *,
    order_id: uuid.UUID,
    user_id: uuid.UUID,
    symbol: str,
    side: Side,
    increments: list[Increment],
    fee_rate: Decimal,
) -> None:
    _, quote = split_symbol(symbol)
    for inc in increments:
        if inc.amount <= 0:
            continue
        fee_c = round_for_house(quote, inc.quote * fee_rate, Direction.CUSTOMER_PAYS)
        await conn.execute(
            text(
                "INSERT INTO trades (id, order_id, user_id, symbol, side, amount, price, fee, fee_currency, "
                "provider, provider_trade_id) VALUES (:id, :o, :u, :sym, :side, :a, :p, :f, :fc, :prov, :pt) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            {
                "id": uuid.uuid5(order_id, f"{inc.provider}:{inc.provider_order_id}:{inc.cumulative_amount}"),
                "o": order_id,
                "u": user_id,
                "sym": symbol,
                "side": side.value,
                "a": inc.amount,
                "p": _floor_price(inc.quote / inc.amount),
                "f": fee_c,
                "fc": quote,
                "prov": inc.provider,
                "pt": inc.provider_order_id,
            },
        )


async def refresh_totals(
    conn: AsyncConnection, order_id: uuid.UUID, status: OrderStatus | None, reason: str | None
) -> tuple[OrderStatus, Decimal, Decimal, Decimal | None, Decimal]:
    """Recompute the order's filled amount, average price and fee from its fills and trades."""
    filled, quote = (
        await conn.execute(
            text(
                "SELECT coalesce(sum(amount), 0), coalesce(sum(quote_amount), 0) FROM provider_fills "
                "WHERE our_order_id = :o"
            ),
            {"o": order_id},
        )
    ).one()
    fee = (
        await conn.execute(
            text("SELECT coalesce(sum(fee), 0) FROM trades WHERE order_id = :o"), {"o": order_id}
        )
    ).scalar_one()
    avg = _floor_price(quote / filled) if filled else None
    providers = (
        await conn.execute(
            text(
                "SELECT provider, provider_order_id FROM provider_fills "
                "WHERE our_order_id = :o ORDER BY provider"
            ),
            {"o": order_id},
        )
    ).all()
    await conn.execute(
        text(
            "UPDATE orders SET filled_amount = :f, filled_quote_amount = :q, average_fill_price = :avg, "
            "total_fee = :fee, status = coalesce(CAST(:s AS varchar), status), "
            "reject_reason = coalesce(CAST(:r AS varchar), reject_reason), "
            "routed_to_provider = :prov, provider_order_id = :poid, updated_at = now(), "
            "filled_at = CASE WHEN CAST(:s AS varchar) = 'FILLED' THEN now() ELSE filled_at END, "
            "cancelled_at = CASE WHEN CAST(:s AS varchar) IN ('CANCELLED', 'EXPIRED') "
            "THEN now() ELSE cancelled_at END "
            "WHERE id = :o"
        ),
        {
            "o": order_id,
            "f": filled,
            "q": quote,
            "avg": avg,
            "fee": fee,
            "s": status.value if status else None,
            "r": reason,
            "prov": ",".join(sorted({p[0] for p in providers})) or None,
            "poid": ",".join(p[1] for p in providers) or None,
        },
    )
    current = (
        await conn.execute(text("SELECT status FROM orders WHERE id = :o"), {"o": order_id})
    ).scalar_one()
    return OrderStatus(current), filled, quote, avg, fee


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


async def clear_attention(conn: AsyncConnection, order_id: uuid.UUID) -> None:
    """The venue has shown an order that was in NEEDS_ATTENTION: back to ROUTED, reason cleared."""
    await conn.execute(
        text(
            "UPDATE orders SET status = 'ROUTED', reject_reason = NULL, updated_at = now() "
            "WHERE id = :id AND status = 'NEEDS_ATTENTION'"
        ),
        {"id": order_id},
    )

"""The rolling 24 h trading limit per KYC tier, counted in the database under the customer's lock."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.limits import TRADING_LIMITS_GBP
from services.orders.errors import OrderRejected
from services.orders.prices import ZERO

# Orders in these states count towards the rolling limit (what was refused or never placed does not).
COUNTED_STATUSES = ("ROUTED", "NEEDS_ATTENTION", "OPEN", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "EXPIRED")
# No KYC tier may trade more than this in 24 h, so no single order may be worth more.
MAX_ORDER_GBP = max(TRADING_LIMITS_GBP.values())


async def lock_customer(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    """Lock the customer's row for the rest of the transaction; their KYC tier, read under the lock.

    So two concurrent orders of one customer are counted one after the other, never both against the
    same headroom. `FOR NO KEY UPDATE`, not `FOR UPDATE`: it must not block the foreign-key checks (`FOR
    KEY SHARE`) of the customer's settlements inserting trades and entries, which deadlocked under load.
    """
    tier: int = (
        await conn.execute(text("SELECT kyc_tier FROM users WHERE id = :u FOR NO KEY UPDATE"), {"u": user_id})
    ).scalar_one()
    return tier


async def check_trading_limit(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    order_id: uuid.UUID,
    kyc_tier: int,
    notional_gbp: Decimal,
    locked: bool = False,
) -> None:
    """Refuse the order if it would take the customer over their tier's rolling 24 h limit.

    Counted under the customer's lock (`lock_customer`), taken here unless the caller holds it already
    (`locked=True`: it read the tier with the lock, one round trip instead of two)."""
    if not locked:
        await lock_customer(conn, user_id)
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

"""KYC-tier limits (docs/architecture.md §6) and the rolling 24 h sum they are checked against, in one place.

Withdrawals and trades each have a per-tier allowance in GBP over any 24 hours. The tables live here so
every saga reads the same numbers; `rolling_24h_sum` is the one query shape ("how much did this customer
use in the last 24 h, not counting this request"), and `lock_customer` serialises concurrent requests of
one customer so two of them never both spend the same headroom.

    async with engine.begin() as conn:
        await lock_customer(conn, user_id)
        used = await rolling_24h_sum(conn, table="withdrawals", amount_column="notional_gbp",
                                     user_id=user_id, statuses=COUNTED_WITHDRAWAL_STATUSES,
                                     exclude_id=withdrawal_id)
        check_limit("withdrawal", tier, WITHDRAWAL_LIMITS_GBP, used, requested)   # raises LimitExceeded
        ... insert the request in the same transaction ...
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ZERO = Decimal(0)
WINDOW = timedelta(hours=24)

# Rolling 24 h withdrawal allowance per KYC tier, in GBP (crypto valued in GBP at request time).
WITHDRAWAL_LIMITS_GBP: Mapping[int, Decimal] = {
    0: ZERO,
    1: Decimal("500"),
    2: Decimal("5000"),
    3: Decimal("50000"),
}

# Rolling 24 h trading allowance per KYC tier, in GBP (docs/architecture.md §6); the order saga checks it too.
TRADING_LIMITS_GBP: Mapping[int, Decimal] = {
    0: ZERO,
    1: Decimal("1000"),
    2: Decimal("10000"),
    3: Decimal("100000"),
}

# Withdrawals in these states use up the allowance: refused, rejected, cancelled or failed ones gave
# the money back, so they do not.
COUNTED_WITHDRAWAL_STATUSES: tuple[str, ...] = (
    "PENDING",
    "AWAITING_APPROVAL",
    "HALTED",
    "APPROVED",
    "PROCESSING",
    "COMPLETED",
    "NEEDS_ATTENTION",  # the money may have left
    "UNDER_REVIEW",  # held for compliance
)

# Only names from this set may be interpolated into the query (they are identifiers, not values).
_SUMMABLE = {("withdrawals", "notional_gbp"), ("orders", "notional_gbp")}


class LimitExceeded(Exception):
    """The request would take the customer over their tier's 24 h allowance. Refuse it; tell them why.

    `reason` is worded for the customer; `limit`, `used` and `requested` let the API show the numbers.
    """

    def __init__(self, kind: str, tier: int, limit: Decimal, used: Decimal, requested: Decimal) -> None:
        self.kind = kind
        self.tier = tier
        self.limit = limit
        self.used = used
        self.requested = requested
        self.remaining = max(ZERO, limit - used)
        self.reason = (
            f"KYC tier {tier} allows £{limit} of {kind}s per 24 h; £{used} already used, "
            f"£{self.remaining} left, this request needs £{requested}"
        )
        super().__init__(self.reason)


@dataclass(frozen=True, slots=True)
class LimitCheck:
    limit: Decimal
    used: Decimal
    requested: Decimal

    @property
    def remaining_after(self) -> Decimal:
        return self.limit - self.used - self.requested


def limit_for(tier: int, table: Mapping[int, Decimal]) -> Decimal:
    """The allowance of `tier`; an unknown tier gets nothing (fail closed)."""
    return table.get(tier, ZERO)


async def lock_customer(conn: AsyncConnection, user_id: uuid.UUID) -> tuple[int, str] | None:
    """Lock the customer's row for the rest of the transaction; returns (kyc_tier, status) or None.

    `FOR NO KEY UPDATE`: serialises the customer's limit checks without blocking the foreign-key checks
    (`FOR KEY SHARE`) of rows other transactions insert for the customer (trades, entries, accounts)."""
    row = (
        await conn.execute(
            text("SELECT kyc_tier, status FROM users WHERE id = :u FOR NO KEY UPDATE"), {"u": user_id}
        )
    ).first()
    return (int(row[0]), str(row[1])) if row else None


async def rolling_24h_sum(
    conn: AsyncConnection,
    *,
    table: str,
    amount_column: str,
    user_id: uuid.UUID,
    statuses: Sequence[str],
    exclude_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Decimal:
    """Sum of `amount_column` over the customer's rows created in the 24 h before `now`."""
    if (table, amount_column) not in _SUMMABLE:
        raise ValueError(f"no rolling limit over {table}.{amount_column}")
    since = (now or datetime.now(UTC)) - WINDOW
    value = (
        await conn.execute(
            text(
                f"SELECT coalesce(sum({amount_column}), 0) FROM {table} "
                "WHERE user_id = :u AND created_at > :since AND status = ANY(:st) "
                "AND (CAST(:ex AS uuid) IS NULL OR id <> CAST(:ex AS uuid))"
            ),
            {"u": user_id, "since": since, "st": list(statuses), "ex": exclude_id},
        )
    ).scalar_one()
    return Decimal(value)


def check_limit(
    kind: str, tier: int, table: Mapping[int, Decimal], used: Decimal, requested: Decimal
) -> LimitCheck:
    """Raise LimitExceeded unless `used + requested` fits the tier's allowance."""
    limit = limit_for(tier, table)
    if used + requested > limit:
        raise LimitExceeded(kind, tier, limit, used, requested)
    return LimitCheck(limit=limit, used=used, requested=requested)


__all__ = [
    "COUNTED_WITHDRAWAL_STATUSES",
    "TRADING_LIMITS_GBP",
    "WINDOW",
    "WITHDRAWAL_LIMITS_GBP",
    "LimitCheck",
    "LimitExceeded",
    "check_limit",
    "limit_for",
    "lock_customer",
    "rolling_24h_sum",
]

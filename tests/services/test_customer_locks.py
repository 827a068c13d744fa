"""The customer-row locks that serialise limit checks never block the foreign-key checks of other
transactions writing the customer's rows (the cause of deadlocks between reserves and settlements)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services import limits
from services import orders as svc


async def _new_user(engine: AsyncEngine) -> uuid.UUID:
    uid = uuid.uuid4()
    async with engine.begin() as c:
        await c.execute(
            text("INSERT INTO users (id, email, password_hash, kyc_tier) VALUES (:i, :e, 'x', 2)"),
            {"i": uid, "e": f"{uid}@locks.test"},
        )
    return uid


async def _trading_limit(conn: AsyncConnection, user: uuid.UUID) -> None:
    await svc.check_trading_limit(
        conn, user_id=user, order_id=uuid.uuid4(), kyc_tier=2, notional_gbp=svc.ZERO
    )


async def _withdrawal_limit(conn: AsyncConnection, user: uuid.UUID) -> None:
    assert await limits.lock_customer(conn, user) is not None


@pytest.mark.parametrize("lock", [_trading_limit, _withdrawal_limit], ids=["orders", "withdrawals"])
async def test_a_locked_customer_row_lets_other_transactions_reference_it(
    engine: AsyncEngine, lock: Callable[[AsyncConnection, uuid.UUID], Awaitable[None]]
) -> None:
    user = await _new_user(engine)
    async with engine.connect() as holder:
        await holder.begin()
        await lock(holder, user)  # held until the end of this block
        async with engine.begin() as other:
            # Fail at once instead of waiting if the insert's foreign-key check is blocked.
            await other.execute(text("SET LOCAL lock_timeout = '1s'"))
            await other.execute(
                text("INSERT INTO accounts (id, kind, user_id, currency) VALUES (:i, 'customer', :u, 'GBP')"),
                {"i": uuid.uuid4(), "u": user},
            )
        await holder.rollback()

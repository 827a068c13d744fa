"""Top-up requests for the provider omnibus balances (hot-wallet float) when one falls below threshold."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.payments_api import TopUpOut
from services.alerts import alert


async def request_top_up(
    engine: AsyncEngine,
    *,
    provider: str,
    currency: str,
    balance: Decimal,
    threshold: Decimal,
    target: Decimal,
) -> tuple[uuid.UUID, bool]:
    """Record a top-up to `target` unless one is already open for this omnibus; returns (id, created)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"float:{provider}:{currency}"}
        )
        open_row = (
            await conn.execute(
                text(
                    "SELECT id FROM float_topups "
                    "WHERE provider = :p AND currency = :c AND status = 'REQUESTED'"
                ),
                {"p": provider, "c": currency},
            )
        ).first()
        if open_row is not None:
            return open_row[0], False
        top_up_id = uuid.uuid4()
        amount = target - balance
        await conn.execute(
            text(
                "INSERT INTO float_topups (id, provider, currency, balance, threshold, target, amount) "
                "VALUES (:id, :p, :c, :b, :th, :t, :a)"
            ),
            {
                "id": top_up_id,
                "p": provider,
                "c": currency,
                "b": balance,
                "th": threshold,
                "t": target,
                "a": amount,
            },
        )
        await alert(
            conn,
            "ops.alert.float_below_threshold",
            target_type="float",
            target_id=f"{provider}:{currency}",
            balance=str(balance),
            threshold=str(threshold),
            target=str(target),
            top_up=str(amount),
            top_up_id=str(top_up_id),
        )
    return top_up_id, True


async def close_top_ups(engine: AsyncEngine, *, provider: str, currency: str) -> int:
    """The omnibus is back above threshold: the open requests are done."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE float_topups SET status = 'DONE', completed_at = now() "
                "WHERE provider = :p AND currency = :c AND status = 'REQUESTED'"
            ),
            {"p": provider, "c": currency},
        )
    return int(result.rowcount or 0)


async def list_top_ups(engine: AsyncEngine, *, limit: int = 100) -> list[TopUpOut]:
    """Top-up requests of the provider omnibus balances, newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, provider, currency, balance, threshold, target, amount, status, created_at "
                    "FROM float_topups ORDER BY created_at DESC LIMIT :l"
                ),
                {"l": limit},
            )
        ).all()
    return [
        TopUpOut(
            id=r[0],
            provider=r[1],
            currency=r[2],
            balance=format(r[3], "f"),
            threshold=format(r[4], "f"),
            target=format(r[5], "f"),
            amount=format(r[6], "f"),
            status=r[7],
            created_at=r[8],
        )  # fmt: skip
        for r in rows
    ]

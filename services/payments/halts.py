"""Currency halts: while one is set, withdrawals of the currency wait (funds held) until it is lifted."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.assets import SCALES
from models.payments_api import HaltOut
from services.alerts import audit
from services.payments.refusals import PaymentRefused


async def halt_reason(engine: AsyncEngine, currency: str) -> str | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT reason FROM currency_halts WHERE currency = :c"), {"c": currency})
        ).first()
    return str(row[0]) if row else None


async def set_halt(
    engine: AsyncEngine, currency: str, reason: str, actor_id: uuid.UUID | None, actor_type: str
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO currency_halts (currency, reason, halted_by) VALUES (:c, :r, :a) "
                "ON CONFLICT (currency) DO UPDATE SET reason = excluded.reason"
            ),
            {"c": currency, "r": reason, "a": actor_id},
        )
        await audit(
            conn, "withdrawals.halt", actor_id=actor_id, actor_type=actor_type, target_type="currency",
            target_id=currency, reason=reason,
        )  # fmt: skip


async def lift_halt(engine: AsyncEngine, currency: str, actor_id: uuid.UUID | None, actor_type: str) -> bool:
    async with engine.begin() as conn:
        lifted = (
            await conn.execute(
                # A halt set by reconciliation is lifted only by two staff (services/reconciliation.py).
                text(
                    "DELETE FROM currency_halts WHERE currency = :c AND NOT EXISTS "
                    "(SELECT 1 FROM reconciliation_halts r WHERE r.currency = :c) RETURNING 1"
                ),
                {"c": currency},
            )
        ).first() is not None
        await audit(
            conn, "withdrawals.unhalt", actor_id=actor_id, actor_type=actor_type, target_type="currency",
            target_id=currency, lifted=lifted,
        )  # fmt: skip
    return lifted


async def list_halts(engine: AsyncEngine) -> list[HaltOut]:
    """Currencies whose withdrawals are halted."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT currency, reason, halted_by, created_at FROM currency_halts"))
        ).all()
    return [HaltOut.model_validate(dict(r._mapping)) for r in rows]


class HaltRefused(PaymentRefused):
    """Staff cannot set or lift this halt here (an unknown currency, or a halt reconciliation set, which
    needs two staff acknowledgements instead). Nothing changed."""

    default_code = "halt_refused"
    status = 409


def _listed(currency: str) -> str:
    if currency not in SCALES:
        raise HaltRefused("unknown_currency", f"no currency {currency}", 404)
    return currency


async def halt_by_staff(engine: AsyncEngine, *, currency: str, reason: str, staff_id: uuid.UUID) -> None:
    """Halt withdrawals of a listed currency: new and approved ones wait (funds held) until lifted."""
    await set_halt(engine, _listed(currency), reason, staff_id, "staff")


async def lift_by_staff(
    engine: AsyncEngine, *, currency: str, staff_id: uuid.UUID | None, actor_type: str = "staff"
) -> bool:
    """Lift a halt staff set (True if there was one); one set by reconciliation is refused (two staff
    acknowledge it instead), whoever asks: the admin API or the CLI."""
    async with engine.connect() as conn:
        by_recon = (
            await conn.execute(
                text("SELECT 1 FROM reconciliation_halts WHERE currency = :c"), {"c": currency}
            )
        ).first()
    if by_recon is not None:
        raise HaltRefused("reconciliation_halt", "this halt needs two staff acknowledgements")
    return await lift_halt(engine, _listed(currency), staff_id, actor_type)

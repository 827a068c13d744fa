"""The crypto address whitelist: an address is usable only after a cool-down from when it was added."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.assets import CRYPTO
from models.payments_api import AddressOut
from services.alerts import audit
from services.payments.ids import ADDRESS_COOL_DOWN
from services.payments.refusals import PaymentRefused


async def add_address(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    currency: str,
    address: str,
    tag: str,
    label: str | None,
    now: datetime | None = None,
    cool_down: timedelta = ADDRESS_COOL_DOWN,
) -> dict[str, Any]:
    """Whitelist an address; it becomes usable after the cool-down (a thief with the password and a
    phone still can't drain the account before the customer sees the alert)."""
    now = now or datetime.now(UTC)
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "INSERT INTO withdrawal_addresses "
                    "(id, user_id, currency, address, tag, label, usable_from) "
                    "VALUES (:id, :u, :c, :a, :t, :l, :uf) ON CONFLICT (user_id, currency, address, tag) "
                    "DO UPDATE SET removed_at = NULL, label = excluded.label, "
                    "usable_from = CASE WHEN withdrawal_addresses.removed_at IS NULL "
                    "THEN withdrawal_addresses.usable_from ELSE excluded.usable_from END "
                    "RETURNING id, currency, address, tag, label, usable_from, created_at"
                ),
                {"id": uuid.uuid4(), "u": user_id, "c": currency, "a": address, "t": tag, "l": label,
                 "uf": now + cool_down},
            )
        ).one()  # fmt: skip
        await audit(
            conn, "withdrawal_address.added", actor_id=user_id, actor_type="user",
            target_type="withdrawal_address", target_id=str(row[0]), currency=currency, address=address,
        )  # fmt: skip
    return dict(row._mapping)


async def remove_address(engine: AsyncEngine, *, user_id: uuid.UUID, address_id: uuid.UUID) -> bool:
    async with engine.begin() as conn:
        removed = (
            await conn.execute(
                text(
                    "UPDATE withdrawal_addresses SET removed_at = now() "
                    "WHERE id = :id AND user_id = :u AND removed_at IS NULL RETURNING 1"
                ),
                {"id": address_id, "u": user_id},
            )
        ).first() is not None
        if removed:
            await audit(
                conn, "withdrawal_address.removed", actor_id=user_id, actor_type="user",
                target_type="withdrawal_address", target_id=str(address_id),
            )  # fmt: skip
    return removed


async def list_addresses(engine: AsyncEngine, *, user_id: uuid.UUID) -> list[AddressOut]:
    """The customer's whitelisted addresses (not removed), oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, currency, address, tag, label, usable_from, created_at "
                    "FROM withdrawal_addresses "
                    "WHERE user_id = :u AND removed_at IS NULL ORDER BY created_at"
                ),
                {"u": user_id},
            )
        ).all()
    return [AddressOut.model_validate(dict(r._mapping)) for r in rows]


class AddressRefused(PaymentRefused):
    """The address cannot be whitelisted or removed (an asset we do not withdraw, no such address)."""

    default_code = "address_refused"
    status = 422


async def whitelist_address(
    engine: AsyncEngine, *, user_id: uuid.UUID, currency: str, address: str, tag: str, label: str | None
) -> AddressOut:
    """Whitelist a crypto address for the customer (TOTP checked by the caller)."""
    if currency not in CRYPTO:
        raise AddressRefused("unknown_currency", f"{currency} addresses are not supported")
    row = await add_address(engine, user_id=user_id, currency=currency, address=address, tag=tag, label=label)
    return AddressOut.model_validate(row)


async def unlist_address(engine: AsyncEngine, *, user_id: uuid.UUID, address_id: uuid.UUID) -> None:
    """Remove one of the customer's whitelisted addresses; 404 if there is none of theirs."""
    if not await remove_address(engine, user_id=user_id, address_id=address_id):
        raise AddressRefused("not_found", "no such address", 404)

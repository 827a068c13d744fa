"""Is a withdrawal destination a listed wallet?

Addresses are compared by `address_key`: hex (0x…) and bech32 (bc1…, ltc1…, tb1…) addresses are
case-insensitive by their encoding, so they compare in lower case; base58 addresses (Bitcoin legacy,
Litecoin, Zcash, Dash…) are case-sensitive and compare exactly. Whitespace is never part of an address.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_CASE_INSENSITIVE_PREFIXES = ("0x", "bc1", "tb1", "ltc1", "bcrt1")


def address_key(address: str) -> str:
    cleaned = "".join(address.split())
    if cleaned.lower().startswith(_CASE_INSENSITIVE_PREFIXES):
        return cleaned.lower()
    return cleaned


class ListedWallet(BaseModel):
    address: str
    currency: str
    entity_id: uuid.UUID
    entity_version: int
    source: str
    source_id: str
    primary_name: str


async def listed_wallets(engine: AsyncEngine, address: str) -> list[ListedWallet]:
    """The current listings naming `address` (empty when it is not listed). A non-empty answer must
    block the withdrawal and go to compliance."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT a.address, a.currency, e.id, e.version, e.source, e.source_id, "
                    "e.data -> 'names' -> 0 ->> 'name' AS primary_name "
                    "FROM sanctions_crypto_addresses a JOIN sanctions_entities e ON e.id = a.entity_id "
                    "WHERE a.address_key = :key AND e.listed"
                ),
                {"key": address_key(address)},
            )
        ).all()
    return [
        ListedWallet(
            address=r.address,
            currency=r.currency,
            entity_id=r.id,
            entity_version=r.version,
            source=r.source,
            source_id=r.source_id,
            primary_name=r.primary_name or "",
        )
        for r in rows
    ]

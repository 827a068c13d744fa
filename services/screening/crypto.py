"""Is a withdrawal destination a listed wallet?

Addresses are compared by `address_key`: hex (0x…) and bech32 (bc1…, ltc1…, tb1…) addresses are
case-insensitive by their encoding, so they compare in lower case; base58 addresses (Bitcoin legacy,
Litecoin, Zcash, Dash…) are case-sensitive and compare exactly. Whitespace is never part of an address.
"""

from __future__ import annotations

import json
import logging
import uuid

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services import audit as audit_log

log = logging.getLogger(__name__)

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


# What a customer is told when a destination is refused for screening: the same words whatever the
# reason, so the refusal never says that the address is on a list (no tipping off).
REFUSAL_CODE = "withdrawal_refused"
REFUSAL_TEXT = "this withdrawal cannot be made; please contact support"
WALLET_CHECK = "WALLET"
WALLET_PROVIDER = "internal-screening"


async def refuse_listed_destination(
    engine: AsyncEngine, *, user_id: uuid.UUID, withdrawal_id: uuid.UUID, currency: str, address: str
) -> bool:
    """True when `address` is a listed wallet: the caller must refuse the withdrawal before any money
    moves. The finding is recorded in its own transaction (the caller's rolls back with the refusal): an
    `aml_checks` row (type WALLET, result HIT, the listings) and an ops alert in the audit log, once per
    withdrawal request (a retried request does not record twice)."""
    listed = await listed_wallets(engine, address)
    if not listed:
        return False
    details = {
        "withdrawal_id": str(withdrawal_id),
        "currency": currency,
        "address": address,
        "listings": [w.model_dump(mode="json") for w in listed],
    }
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"wallet-screening:{withdrawal_id}"}
        )
        seen = (
            await conn.execute(
                text(
                    "SELECT 1 FROM aml_checks WHERE user_id = :u AND check_type = :t "
                    "AND details ->> 'withdrawal_id' = :w"
                ),
                {"u": user_id, "t": WALLET_CHECK, "w": str(withdrawal_id)},
            )
        ).first()
        if seen is not None:
            return True
        check_id = uuid.uuid4()
        await conn.execute(
            text(
                "INSERT INTO aml_checks (id, user_id, check_type, provider, result, risk_score, details) "
                "VALUES (:id, :u, :t, :p, 'HIT', 100, CAST(:d AS jsonb))"
            ),
            {"id": check_id, "u": user_id, "t": WALLET_CHECK, "p": WALLET_PROVIDER, "d": json.dumps(details)},
        )
        alert = {"aml_check_id": str(check_id), **details}
        log.warning(json.dumps({"alert": "ops.alert.listed_wallet_destination", "target": str(user_id)}))
        await audit_log.record(
            conn, "ops.alert.listed_wallet_destination", target_type="user", target_id=user_id, details=alert
        )
    return True

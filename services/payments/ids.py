"""Ids and constants shared by the payments modules: a deposit's id derives from the provider's
transaction id, so every delivery of the same payment lands on the same row and ledger key."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

DEPOSIT_ID_NAMESPACE = uuid.UUID("6f1c2a4e-8d0b-4f7a-9a51-3c2b1e0d9f11")
ADDRESS_COOL_DOWN = timedelta(hours=24)
ZERO = Decimal(0)


def deposit_id(provider: str, provider_tx_id: str) -> uuid.UUID:
    """The deposit's id (and ledger reference) derived from the provider's transaction id, so every
    delivery of the same payment lands on the same row and the same ledger idempotency key."""
    return uuid.uuid5(DEPOSIT_ID_NAMESPACE, f"{provider}:{provider_tx_id}")

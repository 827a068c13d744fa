"""A posting as a value: its legs, the accounts they name, its idempotency key, and the checks a
posting or a hold must pass before any of it reaches the database.

Nothing here touches the database. The same rules are enforced again by the ledger's SQL functions
and constraints (see the package docstring); checking them here first gives the caller a precise
error without a round trip.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from models.assets import PrecisionError, UnknownCurrency, check_scale, scale
from services.ledger.errors import CurrencyMismatch, InvalidAmount, UnbalancedPosting


class HouseAccount:
    """Codes of the house's accounts. One (code, currency) is a pool of shard rows."""

    FEE_REVENUE = "fee_revenue"
    BANK_CASH = "bank:cash"  # customer GBP held at the bank (safeguarding account)
    SUSPENSE = "suspense"  # money we received but cannot attribute yet
    WITHDRAWALS_IN_FLIGHT = "withdrawals:in_flight"
    ROUNDING = "rounding"  # dust the house absorbs so a venue fill always settles (services/orders.py)

    @staticmethod
    def provider(name: str) -> str:
        """Our omnibus/settlement account at a liquidity provider."""
        return f"provider:{name}"


@dataclass(frozen=True)
class House:
    """A leg's target when it is a house account; the ledger picks the shard."""

    code: str


AccountRef = uuid.UUID | House


@dataclass(frozen=True)
class Leg:
    account: AccountRef
    currency: str
    amount: Decimal
    hold_id: uuid.UUID | None = None  # the debit is paid from this hold (customer's reserved funds)


@dataclass(frozen=True)
class Posting:
    """A journal transaction to apply once. `step` distinguishes the postings of one reference."""

    reference_type: str
    reference_id: uuid.UUID
    step: str
    legs: Sequence[Leg]
    kind: str = "transfer"
    created_by: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    close_holds: bool = True  # commit the holds used (release what they did not consume)

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.reference_type, self.reference_id, self.step)


def idempotency_key(reference_type: str, reference_id: uuid.UUID, step: str) -> str:
    return f"{reference_type}:{reference_id}:{step}"


class PostingResult(BaseModel):
    transaction_id: uuid.UUID
    replayed: bool


class HoldResult(BaseModel):
    hold_id: uuid.UUID
    replayed: bool


def fmt(amount: Decimal) -> str:
    """An amount as the database reads it: plain digits, never an exponent."""
    return format(amount, "f")


def request_hash(posting: Posting) -> str:
    """Fingerprint of what the posting means (house legs by code, not shard), for key-reuse detection."""
    legs = sorted(
        (
            leg.account.code if isinstance(leg.account, House) else str(leg.account),
            leg.currency,
            fmt(leg.amount.normalize()),
            str(leg.hold_id or ""),
        )
        for leg in posting.legs
    )
    body = json.dumps(
        [posting.kind, posting.reference_type, str(posting.reference_id), legs, posting.close_holds]
    )
    return hashlib.sha256(body.encode()).hexdigest()


def check_currency(currency: str) -> None:
    """Raise CurrencyMismatch for a currency we do not list."""
    try:
        scale(currency)
    except UnknownCurrency as e:
        raise CurrencyMismatch(str(e)) from e


def check_amount(currency: str, amount: Decimal) -> None:
    """Raise CurrencyMismatch for an unlisted currency, InvalidAmount for an amount finer than its scale."""
    try:
        check_scale(currency, amount)
    except UnknownCurrency as e:
        raise CurrencyMismatch(str(e)) from e
    except PrecisionError as e:
        raise InvalidAmount(str(e)) from e


def validate_posting(posting: Posting) -> None:
    """At least two legs, each non-zero at its currency's scale, a hold only on a debit, zero-sum per
    currency; otherwise the typed error."""
    if len(posting.legs) < 2:
        raise UnbalancedPosting("a posting needs at least two legs")
    sums: dict[str, Decimal] = {}
    for leg in posting.legs:
        check_amount(leg.currency, leg.amount)
        if leg.amount == 0:
            raise InvalidAmount("leg amounts must be non-zero")
        if leg.hold_id is not None and leg.amount > 0:
            raise InvalidAmount("a leg paid from a hold must be a debit")
        sums[leg.currency] = sums.get(leg.currency, Decimal(0)) + leg.amount
    unbalanced = {c: s for c, s in sums.items() if s != 0}
    if unbalanced:
        raise UnbalancedPosting(f"legs do not sum to zero: {unbalanced}")


def validate_hold(currency: str, amount: Decimal) -> None:
    """A hold is positive, at its currency's scale, in a currency we list."""
    check_amount(currency, amount)
    if amount <= 0:
        raise InvalidAmount("a hold must be positive")

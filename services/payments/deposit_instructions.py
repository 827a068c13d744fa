"""How a customer pays in: their bank reference (GBP) or their own crypto deposit address, issued once by
the bank or the venue and kept in `deposit_references` / `crypto_deposit_addresses`.

The outside parties are reached through `DepositAccounts` (the API's clients): this module only decides
what to ask for and records the answer, so a repeated request never issues a second reference or address.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.assets import CRYPTO, FIAT
from models.payments_api import DepositInstructions
from services.alerts import alert
from services.payments.refusals import PaymentRefused


class DepositInstructionsUnavailable(PaymentRefused):
    """The bank or the venue cannot issue the customer's reference or address right now (503): nothing
    was recorded; the customer tries again later. `code` says which."""

    default_code = "deposit_instructions_unavailable"
    status = 503


@dataclass(frozen=True, slots=True)
class BankDetails:
    """Where the customer pays GBP to, as the bank issued it."""

    reference: str
    sort_code: str
    account_number: str
    account_name: str


@dataclass(frozen=True, slots=True)
class IssuedAddress:
    address: str
    tag: str | None


class DepositAccounts(Protocol):
    """The bank and the venue, as far as deposit instructions need them; each raises
    `DepositInstructionsUnavailable` when it cannot answer."""

    async def bank_reference(self, *, user_id: uuid.UUID, email: str) -> BankDetails: ...

    async def new_deposit_address(self, *, provider: str, currency: str) -> IssuedAddress: ...


async def deposit_instructions(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    email: str,
    currency: str,
    accounts: DepositAccounts,
    provider: str,
    confirmations: int,
) -> DepositInstructions:
    """The customer's instructions for `currency`, issued on first request and the same afterwards."""
    if currency in FIAT:
        return await _bank_instructions(engine, user_id=user_id, email=email, accounts=accounts)
    if currency in CRYPTO:
        return await _crypto_instructions(
            engine, user_id=user_id, currency=currency, accounts=accounts, provider=provider,
            confirmations=confirmations,
        )  # fmt: skip
    raise DepositInstructionsUnavailable("unknown_currency", f"{currency} cannot be deposited", 422)


async def _bank_instructions(
    engine: AsyncEngine, *, user_id: uuid.UUID, email: str, accounts: DepositAccounts
) -> DepositInstructions:
    select = text(
        "SELECT reference, sort_code, account_number, account_name FROM deposit_references WHERE user_id = :u"
    )
    async with engine.connect() as conn:
        row = (await conn.execute(select, {"u": user_id})).first()
    if row is None:
        ref = await accounts.bank_reference(user_id=user_id, email=email)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO deposit_references (id, user_id, provider, reference, sort_code, "
                    "account_number, account_name) VALUES (:id, :u, 'bank', :r, :sc, :an, :n) "
                    "ON CONFLICT (user_id) DO NOTHING"
                ),
                {"id": uuid.uuid4(), "u": user_id, "r": ref.reference, "sc": ref.sort_code,
                 "an": ref.account_number, "n": ref.account_name},
            )  # fmt: skip
            row = (await conn.execute(select, {"u": user_id})).one()  # ours, or a concurrent request's
    return DepositInstructions(
        currency="GBP", reference=row[0], sort_code=row[1], account_number=row[2], account_name=row[3]
    )


async def _crypto_instructions(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    currency: str,
    accounts: DepositAccounts,
    provider: str,
    confirmations: int,
) -> DepositInstructions:
    select = text(
        "SELECT address, tag FROM crypto_deposit_addresses "
        "WHERE user_id = :u AND provider = :p AND currency = :c"
    )
    params = {"u": user_id, "p": provider, "c": currency}
    async with engine.connect() as conn:
        row = (await conn.execute(select, params)).first()
    if row is None:
        # A fresh address per customer: deposits are attributed by the address they arrive at.
        given = await accounts.new_deposit_address(provider=provider, currency=currency)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO crypto_deposit_addresses (id, user_id, provider, currency, address, tag) "
                    "VALUES (:id, :u, :p, :c, :a, :t) ON CONFLICT DO NOTHING"
                ),
                {"id": uuid.uuid4(), **params, "a": given.address, "t": given.tag or ""},
            )
            row = (await conn.execute(select, params)).first()
            if row is None:
                # The provider handed out an address another customer already has (one omnibus
                # address): attributing deposits to it would be guesswork, so refuse and tell ops.
                await alert(
                    conn, "ops.alert.deposit_address_shared", target_type="user", target_id=str(user_id),
                    provider=provider, currency=currency,
                )  # fmt: skip
        if row is None:
            raise DepositInstructionsUnavailable(
                "deposit_address_unavailable",
                f"no personal {currency} deposit address is available right now; support has been told",
            )
    return DepositInstructions(
        currency=currency, address=row[0], tag=row[1] or None, network=currency,
        confirmations_required=confirmations,
    )  # fmt: skip

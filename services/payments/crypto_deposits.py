"""On-chain deposits: credited once per provider + chain tx id + output to the customer whose address
received them; what cannot be booked exactly is held in suspense."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.payments import DepositResult
from services.ledger import HouseAccount, Ledger
from services.payments.bank_deposits import post_credit
from services.payments.ids import DEPOSIT_ID_NAMESPACE, ZERO
from services.payments.suspense import DEPOSIT_HELD, Uncreditable, deposit_problem, hold_in_suspense


def deposit_output(address: str | None, output_index: int | None = None) -> str:
    """Which output of a chain transaction a deposit is: one transaction can pay several of our
    addresses (two customers in one exchange payout), and each is a deposit of its own."""
    base = address or ""
    return base if output_index is None else f"{base}#{output_index}"


def crypto_deposit_id(provider: str, tx_id: str, output: str) -> uuid.UUID:
    """The id of a deposit first seen after deposits were keyed per output (rows recorded before keep
    their old id, which `credit_crypto_deposit` reads back, so their ledger key is unchanged)."""
    return uuid.uuid5(DEPOSIT_ID_NAMESPACE, f"{provider}:{tx_id}:{output}")


async def credit_crypto_deposit(
    engine: AsyncEngine,
    ledger: Ledger,
    *,
    provider: str,
    tx_id: str,
    currency: str,
    amount: Decimal,
    address: str | None,
    confirmations: int,
    output_index: int | None = None,
    venue_ref: str | None = None,
    notional_gbp: Decimal | None = None,
) -> DepositResult:
    """Credit a confirmed on-chain deposit to the customer whose provider address received it, once.

    Keyed by provider + chain tx id + output (the receiving address), so a transaction paying two
    customers credits each. A deposit we cannot book exactly (an asset we do not list, an amount finer
    than our scale) is not credited and not rounded: it goes to `deposit_suspense` with an ops alert.
    `venue_ref` is the venue's own id for the deposit record: a second record for the same tx and
    address (two outputs to one address) is held for ops rather than taken for a repeat.
    """
    output = deposit_output(address, output_index)
    problem = deposit_problem(currency, amount)
    if not 0 < len(tx_id) <= 100 or len(output) > 140:
        problem = Uncreditable("malformed_deposit", "the transaction id or address has an impossible length")
    async with engine.begin() as conn:
        owners = (
            await conn.execute(
                text(
                    "SELECT a.user_id, u.email FROM crypto_deposit_addresses a "
                    "JOIN users u ON u.id = a.user_id "
                    "WHERE a.provider = :p AND a.currency = :c AND a.address = :addr"
                ),
                {"p": provider, "c": currency, "addr": address or ""},
            )
        ).all()
        # Exactly one owner, or nobody: an address shared by customers can't be attributed.
        user_id: uuid.UUID | None = owners[0][0] if len(owners) == 1 else None
        email: str | None = owners[0][1] if len(owners) == 1 else None
        held_as = None
        if problem is None:
            existing = (
                await conn.execute(
                    text(
                        "SELECT details->>'venue_ref' FROM deposits "
                        "WHERE provider = :p AND provider_tx_id = :tx AND output = :o"
                    ),
                    {"p": provider, "tx": tx_id, "o": output},
                )
            ).first()
            if existing is not None and existing[0] and venue_ref and existing[0] != venue_ref:
                problem = Uncreditable(
                    "repeated_output",
                    f"a second deposit record ({venue_ref}, first {existing[0]}) for the same transaction "
                    "and address: a second output, or the venue listing one twice",
                )
                held_as = f"{output}@{venue_ref}"
        if problem is not None:
            await hold_in_suspense(
                conn,
                source=provider,
                external_id=tx_id,
                output=held_as or output,
                user_id=user_id,
                currency=currency,
                amount=format(amount, "f") if amount.is_finite() else str(amount),
                problem=problem,
                payload={"address": address, "confirmations": confirmations, "venue_ref": venue_ref,
                         "output_index": output_index},
            )  # fmt: skip
            return DepositResult(
                deposit_id=crypto_deposit_id(provider, tx_id, held_as or output),
                user_id=None,
                currency=currency,
                amount=amount if amount.is_finite() else ZERO,
                status=DEPOSIT_HELD,
            )
        await conn.execute(
            text(
                "INSERT INTO deposits (id, user_id, currency, amount, payment_method, provider, "
                "provider_tx_id, output, status, details) "
                "VALUES (:id, :u, :c, :a, 'CRYPTO', :p, :tx, :o, 'PENDING', CAST(:d AS jsonb)) "
                "ON CONFLICT (provider, provider_tx_id, output) DO NOTHING"
            ),
            {
                "id": crypto_deposit_id(provider, tx_id, output),
                "u": user_id,
                "c": currency,
                "a": amount,
                "p": provider,
                "tx": tx_id,
                "o": output,
                "d": json.dumps(
                    {"address": address, "confirmations": confirmations, "venue_ref": venue_ref,
                     "output_index": output_index,
                     **({"notional_gbp": format(notional_gbp, "f")} if notional_gbp is not None else {})}
                ),
            },
        )  # fmt: skip
        # The row's own id: a deposit recorded before 0012 keeps its old id and so its ledger key.
        dep_id, user_id = (
            await conn.execute(
                text(
                    "SELECT id, user_id FROM deposits "
                    "WHERE provider = :p AND provider_tx_id = :tx AND output = :o"
                ),
                {"p": provider, "tx": tx_id, "o": output},
            )
        ).one()  # fmt: skip
        status, replayed, balance = await post_credit(
            conn,
            ledger,
            dep_id=dep_id,
            user_id=user_id,
            currency=currency,
            amount=amount,
            house=HouseAccount.provider(provider),
            kind="deposit",
            metadata={"provider": provider, "tx_id": tx_id, "address": address, "output": output},
        )
    return DepositResult(
        deposit_id=dep_id,
        user_id=user_id,
        currency=currency,
        amount=amount,
        status=status,
        replayed=replayed,
        balance_after=balance,
        email=email if user_id else None,
    )


async def crypto_deposit_handled(
    engine: AsyncEngine, provider: str, tx_id: str, output: str, venue_ref: str | None = None
) -> bool:
    """Whether this output of the transaction was already credited (customer or suspense) or held for
    ops; a cheap read so each poll over the venue's history posts nothing for old deposits."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, details->>'venue_ref' FROM deposits "
                    "WHERE provider = :p AND provider_tx_id = :t AND output = :o"
                ),
                {"p": provider, "t": tx_id, "o": output},
            )
        ).first()
        if row is not None and row[0] in ("CONFIRMED", "SUSPENSE"):
            if not row[1] or not venue_ref or row[1] == venue_ref:
                return True
        held = (
            await conn.execute(
                text(
                    "SELECT 1 FROM deposit_suspense WHERE source = :p AND external_id = :t "
                    "AND output IN (:o, :held)"
                ),
                {"p": provider, "t": tx_id, "o": output, "held": f"{output}@{venue_ref}"},
            )
        ).first()
    return held is not None

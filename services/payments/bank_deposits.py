"""Inbound Faster Payments: credited once per bank transaction id to the customer whose reference it
carries (or to suspense), and the payer's account remembered as a candidate withdrawal destination."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import check_scale
from models.payments import BankPayment, DepositResult
from services.alerts import alert
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.notifications import NotificationEvent, enqueue
from services.payee import customer_name
from services.payments.bank_accounts import record_payer_account
from services.payments.ids import ZERO, deposit_id
from services.payments.suspense import (
    DEPOSIT_HELD,
    Uncreditable,
    bank_payment_problem,
    hold_in_suspense,
    storable,
)


async def _owner_of_reference(conn: AsyncConnection, reference: str) -> tuple[uuid.UUID, str, str] | None:
    """(user id, email, name on file) of the customer the reference belongs to."""
    row = (
        await conn.execute(
            text(
                "SELECT r.user_id, u.email, u.first_name, u.last_name FROM deposit_references r "
                "JOIN users u ON u.id = r.user_id WHERE r.reference = :ref"
            ),
            {"ref": reference.strip().upper()},
        )
    ).first()
    return (row[0], row[1], customer_name(row[2], row[3])) if row else None


async def post_credit(
    conn: AsyncConnection,
    ledger: Ledger,
    *,
    dep_id: uuid.UUID,
    user_id: uuid.UUID | None,
    currency: str,
    amount: Decimal,
    house: str,
    kind: str,
    metadata: dict[str, Any],
) -> tuple[str, bool, Decimal | None]:
    """Post the deposit once (customer, or suspense, +amount; `house` -amount) and mark its row booked:
    CONFIRMED, or SUSPENSE (with an ops alert, the first time) when nobody could be identified.
    Returns (status, replayed, balance after)."""
    check_scale(currency, amount)
    if user_id is not None:
        account = await ledger.customer_account(user_id, currency, conn)
        target: uuid.UUID | House = account
    else:
        target = House(HouseAccount.SUSPENSE)
    result = await ledger.post(
        Posting(
            reference_type="deposit",
            reference_id=dep_id,
            step="credit",
            kind=kind,
            legs=[Leg(target, currency, amount), Leg(House(house), currency, -amount)],
            metadata=metadata,
        ),
        conn,
    )
    balance = None
    if user_id is not None:
        balance = (
            await conn.execute(text("SELECT balance FROM accounts WHERE id = :a"), {"a": target})
        ).scalar_one()
    status = "CONFIRMED" if user_id else "SUSPENSE"
    await conn.execute(
        text(
            "UPDATE deposits SET status = :s, ledger_transaction_id = :t, "
            "confirmed_at = coalesce(confirmed_at, now()) WHERE id = :id"
        ),
        {"s": status, "t": result.transaction_id, "id": dep_id},
    )
    if user_id is None and not result.replayed:
        await alert(
            conn, "ops.alert.deposit_unattributed", target_type="deposit", target_id=str(dep_id),
            **metadata, amount=str(amount), currency=currency,
        )  # fmt: skip
    if user_id is not None and not result.replayed:
        # Told in the crediting transaction (issue 17); the saga's notify step enqueues the same key.
        await enqueue(
            conn, event=NotificationEvent.DEPOSIT_CONFIRMED, user_id=user_id,
            payload={"currency": currency, "amount": str(amount), "balance": str(balance)},
            dedupe_key=f"deposit:{dep_id}:confirmed",
        )  # fmt: skip
    return status, result.replayed, balance


async def credit_bank_deposit(engine: AsyncEngine, ledger: Ledger, payment: BankPayment) -> DepositResult:
    """Record and credit an inbound Faster Payment exactly once (keyed by the bank's transaction id).

    The reference names the customer; an unknown reference is credited to suspense and raises an ops
    alert. The payer's account becomes the customer's verified bank account: GBP withdrawals go back
    only to an account the customer has paid in from.
    """
    dep_id = deposit_id("bank", payment.bank_tx_id)
    problem = bank_payment_problem(payment)
    async with engine.begin() as conn:
        row = await _owner_of_reference(conn, payment.reference)
        user_id: uuid.UUID | None = row[0] if row else None
        email: str | None = row[1] if row else None
        if problem is not None:  # the webhook refuses these; a saga started with one must still finish
            await hold_in_suspense(
                conn,
                source="bank",
                external_id=payment.bank_tx_id,
                user_id=user_id,
                currency=payment.currency,
                amount=str(payment.amount),
                problem=problem,
                payload=payment.model_dump(mode="json"),
            )
            return DepositResult(
                deposit_id=dep_id,
                user_id=None,
                currency=payment.currency,
                amount=payment.amount if payment.amount.is_finite() else ZERO,
                status=DEPOSIT_HELD,
            )
        details = payment.model_dump(mode="json", exclude={"amount", "bank_tx_id"})
        await conn.execute(
            text(
                "INSERT INTO deposits (id, user_id, currency, amount, payment_method, provider, "
                "provider_tx_id, "
                "reference, status, details) VALUES (:id, :u, :c, :a, 'BANK_TRANSFER', 'bank', :tx, :ref, "
                "'PENDING', CAST(:d AS jsonb)) ON CONFLICT (provider, provider_tx_id, output) DO NOTHING"
            ),
            {
                "id": dep_id,
                "u": user_id,
                "c": payment.currency,
                "a": payment.amount,
                "tx": payment.bank_tx_id,
                "ref": payment.reference,
                "d": json.dumps(details),
            },
        )
        status, replayed, balance = await post_credit(
            conn,
            ledger,
            dep_id=dep_id,
            user_id=user_id,
            currency=payment.currency,
            amount=payment.amount,
            house=HouseAccount.BANK_CASH,
            kind="deposit",
            metadata={"bank_tx_id": payment.bank_tx_id, "reference": payment.reference},
        )
        if row is not None and payment.payer_sort_code and payment.payer_account_number:
            await record_payer_account(conn, row[0], row[2], payment)
    return DepositResult(
        deposit_id=dep_id,
        user_id=user_id,
        currency=payment.currency,
        amount=payment.amount,
        status=status,
        replayed=replayed,
        balance_after=balance,
        email=email,
    )


async def hold_bank_event(
    engine: AsyncEngine, *, external_id: str, data: dict[str, Any], problem: Uncreditable
) -> None:
    """A validly signed `payment.received` that cannot be a real Faster Payment (wrong currency, a
    negative or sub-penny amount, missing fields): suspense and an ops alert, no credit, no saga.

    Kept verbatim but for NUL characters, which PostgreSQL text and jsonb cannot hold: each is stored
    as the six characters `\\u0000` (so a hostile event is held, not a 500 that the bank redelivers)."""
    data = storable(data)
    external_id = storable(external_id)
    reference = data.get("reference")
    async with engine.begin() as conn:
        owner = await _owner_of_reference(conn, reference) if isinstance(reference, str) else None
        await hold_in_suspense(
            conn,
            source="bank",
            external_id=external_id,
            user_id=owner[0] if owner else None,
            currency=str(data.get("currency", "")),
            amount=str(data.get("amount", "")),
            problem=problem,
            payload=data,
        )

"""Deposits we cannot credit as reported: why (`Uncreditable`), and `deposit_suspense`, where they are
kept verbatim with an ops alert until ops resolve them. Nothing is ever rounded to make a deposit fit."""

from __future__ import annotations

import json
import re
import unicodedata
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import FIAT, SCALES, PrecisionError, check_scale
from models.payments import BankPayment
from services.alerts import alert, audit

DEPOSIT_HELD = "HELD_FOR_REVIEW"  # DepositResult.status of a deposit put in `deposit_suspense`
_MAX_DEPOSIT = Decimal(10) ** 17  # NUMERIC(36,18) holds 18 integer digits; no real payment comes near


@dataclass(frozen=True, slots=True)
class Uncreditable:
    """Why a reported deposit cannot be booked as it stands: a stable `code` and words for ops."""

    code: str
    detail: str


def deposit_problem(currency: str, amount: Decimal, *, fiat_only: bool = False) -> Uncreditable | None:
    """None when `amount` of `currency` can be credited exactly; else why not. Never rounds: an amount
    finer than our scale is not ours to trim (either way it would create or lose money)."""
    if currency not in SCALES or (fiat_only and currency not in FIAT):
        wanted = "GBP" if fiat_only else "one of " + ", ".join(sorted(SCALES))
        return Uncreditable("unlisted_asset", f"{currency!r} is not an asset we hold (expected {wanted})")
    if not amount.is_finite() or amount <= 0:
        return Uncreditable("amount_not_positive", f"{amount} is not a positive amount")
    if amount >= _MAX_DEPOSIT:
        return Uncreditable("amount_too_large", f"{amount} {currency} is beyond any real deposit")
    try:
        check_scale(currency, amount)
    except PrecisionError:
        return Uncreditable(
            "amount_finer_than_scale", f"{amount} {currency} is finer than {SCALES[currency]} decimal places"
        )
    return None


_SORT_CODE = re.compile(r"^[0-9]{6}$")
_ACCOUNT_NUMBER = re.compile(r"^[0-9]{8}$")


def bank_payment_problem(payment: BankPayment) -> Uncreditable | None:
    """None when the bank's payment can be credited as reported; else why not (checked at the webhook,
    and again by the deposit saga, so a bad field is never a retry loop against a column limit)."""
    if not 0 < len(payment.bank_tx_id) <= 100 or len(payment.reference) > 100:
        return Uncreditable(
            "malformed_payment", "the transaction id or the reference has an impossible length"
        )
    texts = (payment.bank_tx_id, payment.reference, payment.payer_name, payment.currency)
    if any(unicodedata.category(ch) == "Cc" for t in texts for ch in t):
        return Uncreditable("malformed_payment", "a field holds a control character")
    payer = (payment.payer_sort_code, payment.payer_account_number)
    if any(payer) and not (_SORT_CODE.match(payer[0]) and _ACCOUNT_NUMBER.match(payer[1])):
        return Uncreditable(
            "malformed_payment", "the payer's sort code or account number is not a UK account"
        )
    return deposit_problem(payment.currency, payment.amount, fiat_only=True)


def storable(value: Any) -> Any:
    """`value` with every NUL character (in keys and strings, at any depth) written as `\\u0000`."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


async def hold_in_suspense(
    conn: AsyncConnection,
    *,
    source: str,
    external_id: str,
    output: str = "",
    user_id: uuid.UUID | None,
    currency: str,
    amount: str,
    problem: Uncreditable,
    payload: dict[str, Any],
) -> bool:
    """Record a deposit we cannot credit (verbatim, nothing booked) and alert ops, once per deposit.

    Returns True the first time; a repeated report (the next poll, a redelivered webhook) changes
    nothing and raises no second alert."""
    # PostgreSQL text and jsonb cannot hold NUL: kept as its escape, so the record stays verbatim.
    external_id, output, currency, amount = (storable(v) for v in (external_id, output, currency, amount))
    inserted = (
        await conn.execute(
            text(
                "INSERT INTO deposit_suspense (id, source, external_id, output, user_id, currency, amount, "
                "reason, detail, payload) VALUES (:id, :s, :x, :o, :u, :c, :a, :r, :d, CAST(:p AS jsonb)) "
                "ON CONFLICT (source, external_id, output) DO NOTHING RETURNING id"
            ),
            {
                "id": uuid.uuid4(),
                "s": source,
                "x": external_id[:200],
                "o": output[:140],
                "u": user_id,
                "c": currency[:20],
                "a": amount[:100],
                "r": problem.code,
                "d": storable(problem.detail),
                "p": json.dumps(storable(payload), default=str),
            },
        )
    ).first()
    if inserted is None:
        return False
    await alert(
        conn,
        "ops.alert.deposit_held",
        target_type="deposit_suspense",
        target_id=str(inserted[0]),
        source=source,
        external_id=external_id[:200],
        output=output[:140],
        user_id=str(user_id) if user_id else None,
        currency=currency[:20],
        amount=amount[:100],
        reason=problem.code,
    )
    return True


async def resolve_suspense(
    engine: AsyncEngine, *, suspense_id: uuid.UUID, actor_id: uuid.UUID | None, actor_type: str, reason: str
) -> bool:
    """Ops close a held deposit once dealt with (returned to the sender, credited by hand through the
    ledger, or found bogus); the reason is audited. False if there is no such OPEN item."""
    async with engine.begin() as conn:
        done = (
            await conn.execute(
                text(
                    "UPDATE deposit_suspense SET status = 'RESOLVED', resolved_at = now() "
                    "WHERE id = :id AND status = 'OPEN' RETURNING id"
                ),
                {"id": suspense_id},
            )
        ).first()
        if done is not None:
            await audit(
                conn, "deposit_suspense.resolved", actor_id=actor_id, actor_type=actor_type,
                target_type="deposit_suspense", target_id=str(suspense_id), reason=reason,
            )  # fmt: skip
    return done is not None


_MALFORMED_PAYMENT = Uncreditable("malformed_payment", "the payment's fields are missing or mistyped")


def received_payment(data: dict[str, Any]) -> tuple[BankPayment | None, Uncreditable | None]:
    """The payment in a bank `payment.received` event and why it cannot be credited (None: it can). A
    payment that cannot even be read comes back as (None, why)."""
    if not isinstance(data.get("amount"), str):  # the bank sends amounts as strings; a float is not money
        return None, Uncreditable("amount_not_a_string", "the amount is not a decimal string")
    try:
        payment = BankPayment.model_validate(data)
    except ValueError:  # pydantic's ValidationError
        return None, _MALFORMED_PAYMENT
    return payment, bank_payment_problem(payment)

"""Payments domain logic (seed §C.4, §C.7): crediting deposits, accepting withdrawals, approvals, halts,
the address whitelist and float top-up requests. No Temporal and no HTTP in here.

Money moves only through the ledger, and every write is keyed by a business id so that a retried
activity, a duplicated webhook or a replayed workflow changes nothing the second time:

- a GBP deposit is keyed by the bank's transaction id, a crypto deposit by provider + chain tx id
  (`deposit_id` derives the deposits row id and the ledger reference from it);
- a withdrawal's hold, completion and release are keyed by the withdrawal id.

Ledger legs: a deposit credits the customer and debits the house account where the money now sits
(`bank:cash` for GBP, `provider:<venue>` for crypto) or, when nobody can be identified, `suspense`
instead of the customer. A completed withdrawal pays amount + fee from the hold: the amount back to
the house account the money leaves from, the fee to `fee_revenue`; a venue's network fee (taken from our
omnibus on top of the amount) goes to `provider:<venue>` too, borne by the house or the customer by setting.

A withdrawal is recorded in the same transaction that starts its saga (`accept_withdrawal(on_recorded=)`),
and its hold is created only while its row is live (`lock_withdrawal_for_hold`, over services/holds.py);
every ending releases every active hold of the withdrawal (`holds.release_all`).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import CRYPTO, FIAT, SCALES, Direction, PrecisionError, check_scale, round_for_house
from models.payments import (
    BankPayment,
    DepositResult,
    Destination,
    WithdrawalStatus,
)
from services import holds
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.limits import (
    COUNTED_WITHDRAWAL_STATUSES,
    WITHDRAWAL_LIMITS_GBP,
    LimitExceeded,
    check_limit,
    lock_customer,
    rolling_24h_sum,
)
from services.payee import NameMatch, check_payee, customer_name
from services.screening import crypto as wallet_screening

log = logging.getLogger("broker.payments")

_NS = uuid.UUID("6f1c2a4e-8d0b-4f7a-9a51-3c2b1e0d9f11")
ADDRESS_COOL_DOWN = timedelta(hours=24)
ZERO = Decimal(0)


def deposit_id(provider: str, provider_tx_id: str) -> uuid.UUID:
    """The deposit's id (and ledger reference) derived from the provider's transaction id, so every
    delivery of the same payment lands on the same row and the same ledger idempotency key."""
    return uuid.uuid5(_NS, f"{provider}:{provider_tx_id}")


async def alert(
    conn: AsyncConnection, action: str, *, target_type: str, target_id: str, **details: Any
) -> None:
    """An ops alert: a warning log line (paging picks it up) and an audit row in the caller's transaction."""
    log.warning(json.dumps({"alert": action, "target": target_id, **details}, default=str))
    await conn.execute(
        text(
            "INSERT INTO audit_log (id, actor_type, action, target_type, target_id, details) "
            "VALUES (:id, 'system', :a, :tt, :ti, CAST(:d AS jsonb))"
        ),
        {
            "id": uuid.uuid4(),
            "a": action,
            "tt": target_type,
            "ti": target_id,
            "d": json.dumps(details, default=str),
        },
    )


async def audit(
    conn: AsyncConnection,
    action: str,
    *,
    actor_id: uuid.UUID | None,
    actor_type: str,
    target_type: str,
    target_id: str,
    **details: Any,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO audit_log (id, actor_id, actor_type, action, target_type, target_id, details) "
            "VALUES (:id, :actor, :at, :a, :tt, :ti, CAST(:d AS jsonb))"
        ),
        {
            "id": uuid.uuid4(),
            "actor": actor_id,
            "at": actor_type,
            "a": action,
            "tt": target_type,
            "ti": target_id,
            "d": json.dumps(details, default=str),
        },
    )


# --- deposits -----------------------------------------------------------------------------------

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


def _storable(value: Any) -> Any:
    """`value` with every NUL character (in keys and strings, at any depth) written as `\\u0000`."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
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
    external_id, output, currency, amount = (_storable(v) for v in (external_id, output, currency, amount))
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
                "d": _storable(problem.detail),
                "p": json.dumps(_storable(payload), default=str),
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


async def hold_bank_event(
    engine: AsyncEngine, *, external_id: str, data: dict[str, Any], problem: Uncreditable
) -> None:
    """A validly signed `payment.received` that cannot be a real Faster Payment (wrong currency, a
    negative or sub-penny amount, missing fields): suspense and an ops alert, no credit, no saga.

    Kept verbatim but for NUL characters, which PostgreSQL text and jsonb cannot hold: each is stored
    as the six characters `\\u0000` (so a hostile event is held, not a 500 that the bank redelivers)."""
    data = _storable(data)
    external_id = _storable(external_id)
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


async def _credit(
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
) -> tuple[uuid.UUID, bool, Decimal | None]:
    """Post the deposit once: customer (or suspense) +amount, `house` -amount."""
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
    return result.transaction_id, result.replayed, balance


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
        tx_id, replayed, balance = await _credit(
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
        status = "CONFIRMED" if user_id else "SUSPENSE"
        await conn.execute(
            text(
                "UPDATE deposits SET status = :s, ledger_transaction_id = :t, "
                "confirmed_at = coalesce(confirmed_at, now()) WHERE id = :id"
            ),
            {"s": status, "t": tx_id, "id": dep_id},
        )
        if row is not None and payment.payer_sort_code and payment.payer_account_number:
            await record_payer_account(conn, row[0], row[2], payment)
        if user_id is None and not replayed:
            await alert(
                conn,
                "ops.alert.deposit_unattributed",
                target_type="deposit",
                target_id=str(dep_id),
                bank_tx_id=payment.bank_tx_id,
                reference=payment.reference,
                amount=str(payment.amount),
                currency=payment.currency,
            )
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


def deposit_output(address: str | None, output_index: int | None = None) -> str:
    """Which output of a chain transaction a deposit is: one transaction can pay several of our
    addresses (two customers in one exchange payout), and each is a deposit of its own."""
    base = address or ""
    return base if output_index is None else f"{base}#{output_index}"


def crypto_deposit_id(provider: str, tx_id: str, output: str) -> uuid.UUID:
    """The id of a deposit first seen after deposits were keyed per output (rows recorded before keep
    their old id, which `credit_crypto_deposit` reads back, so their ledger key is unchanged)."""
    return uuid.uuid5(_NS, f"{provider}:{tx_id}:{output}")


async def record_payer_account(
    conn: AsyncConnection, user_id: uuid.UUID, name_on_file: str, payment: BankPayment
) -> None:
    """Remember the account a customer's deposit came from, as a *candidate* withdrawal destination.

    Anyone who knows a customer's reference can pay in under it, so the account is usable only after
    its holder name matches the customer's (`services.payee`), the customer confirms it with TOTP and
    the cooling-off period has passed. A name that does not match is held for review with an ops alert.
    """
    check = check_payee(payment.payer_name, name_on_file)
    status = "HELD_FOR_REVIEW" if check.result is NameMatch.NO_MATCH else "UNCONFIRMED"
    inserted = (
        await conn.execute(
            text(
                "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, verified, "
                "verified_by, status, name_match, name_score) "
                "VALUES (:id, :u, :n, :sc, :an, true, 'inbound_payment', :s, :m, :score) "
                "ON CONFLICT (user_id, sort_code, account_number) DO NOTHING RETURNING id"
            ),
            {
                "id": uuid.uuid4(),
                "u": user_id,
                "n": (payment.payer_name or "")[:140],
                "sc": payment.payer_sort_code,
                "an": payment.payer_account_number,
                "s": status,
                "m": check.result.value,
                "score": check.score,
            },
        )
    ).first()
    if inserted is not None and check.result is NameMatch.NO_MATCH:
        await alert(
            conn,
            "ops.alert.payer_name_mismatch",
            target_type="bank_account",
            target_id=str(inserted[0]),
            user_id=str(user_id),
            bank_tx_id=payment.bank_tx_id,
            name_score=check.score,
        )


class BankAccountRefused(Exception):
    """A bank account action the account's state does not allow. `code` is stable."""

    def __init__(self, code: str, reason: str, status: int = 409) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class ConfirmedBankAccount:
    id: uuid.UUID
    sort_code: str
    account_number: str
    holder_name: str
    usable_from: datetime
    newly_confirmed: bool


async def confirm_bank_account(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    cooling_off: timedelta,
    now: datetime | None = None,
) -> ConfirmedBankAccount:
    """The customer (TOTP checked by the caller) confirms a payer account as theirs: it can receive GBP
    withdrawals from `now + cooling_off`. Confirming again changes nothing. Held or rejected accounts
    (the holder name did not match) cannot be confirmed by the customer. An account recorded before
    the name check existed is checked now, and held for review if the name does not match."""
    now = now or datetime.now(UTC)
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT b.status, b.sort_code, b.account_number, b.holder_name, b.usable_from, "
                    "b.name_match, u.first_name, u.last_name FROM bank_accounts b "
                    "JOIN users u ON u.id = b.user_id WHERE b.id = :id AND b.user_id = :u FOR UPDATE OF b"
                ),
                {"id": account_id, "u": user_id},
            )
        ).first()
        if row is None:
            raise BankAccountRefused("not_found", "no such bank account", 404)
        status = row[0]
        if status == "UNCONFIRMED" and row[5] is None:  # recorded before 0012: never name-checked
            check = check_payee(row[3], customer_name(row[6], row[7]))
            status = "HELD_FOR_REVIEW" if check.result is NameMatch.NO_MATCH else status
            await conn.execute(
                text(
                    "UPDATE bank_accounts SET name_match = :m, name_score = :sc, status = :s WHERE id = :id"
                ),
                {"m": check.result.value, "sc": check.score, "s": status, "id": account_id},
            )
            if status == "HELD_FOR_REVIEW":
                await alert(
                    conn, "ops.alert.payer_name_mismatch", target_type="bank_account",
                    target_id=str(account_id), user_id=str(user_id), name_score=check.score,
                )  # fmt: skip
    if status == "HELD_FOR_REVIEW":
        raise BankAccountRefused(
            "bank_account_held_for_review",
            "the account holder's name does not match yours; our team is reviewing it",
        )
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, sort_code, account_number, holder_name, usable_from FROM bank_accounts "
                    "WHERE id = :id AND user_id = :u FOR UPDATE"
                ),
                {"id": account_id, "u": user_id},
            )
        ).one()
        status = row[0]
        if status == "HELD_FOR_REVIEW":
            raise BankAccountRefused(
                "bank_account_held_for_review",
                "the account holder's name does not match yours; our team is reviewing it",
            )
        if status == "REJECTED":
            raise BankAccountRefused("bank_account_rejected", "this account cannot receive withdrawals")
        if status == "CONFIRMED":
            return ConfirmedBankAccount(account_id, row[1], row[2], row[3], row[4], newly_confirmed=False)
        usable_from = now + cooling_off
        await conn.execute(
            text(
                "UPDATE bank_accounts SET status = 'CONFIRMED', confirmed_at = :now, usable_from = :uf "
                "WHERE id = :id"
            ),
            {"now": now, "uf": usable_from, "id": account_id},
        )
        await audit(
            conn, "bank_account.confirmed", actor_id=user_id, actor_type="user", target_type="bank_account",
            target_id=str(account_id), usable_from=usable_from.isoformat(),
        )  # fmt: skip
    return ConfirmedBankAccount(account_id, row[1], row[2], row[3], usable_from, newly_confirmed=True)


async def review_bank_account(
    engine: AsyncEngine, *, account_id: uuid.UUID, approve: bool, actor_id: uuid.UUID | None, reason: str
) -> str:
    """Ops decide on a held payer account: approved, the customer may confirm it (TOTP, cooling-off);
    rejected, it can never receive withdrawals. Returns the new status."""
    new_status = "UNCONFIRMED" if approve else "REJECTED"
    async with engine.begin() as conn:
        done = (
            await conn.execute(
                text(
                    "UPDATE bank_accounts SET status = :s WHERE id = :id AND status = 'HELD_FOR_REVIEW' "
                    "RETURNING id"
                ),
                {"s": new_status, "id": account_id},
            )
        ).first()
        if done is None:
            raise BankAccountRefused("not_held", "no bank account held for review with that id", 404)
        await audit(
            conn, f"bank_account.review.{'approved' if approve else 'rejected'}", actor_id=actor_id,
            actor_type="staff", target_type="bank_account", target_id=str(account_id), reason=reason,
        )  # fmt: skip
    return new_status


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
                     "output_index": output_index}
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
        ledger_tx, replayed, balance = await _credit(
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
        status = "CONFIRMED" if user_id else "SUSPENSE"
        await conn.execute(
            text(
                "UPDATE deposits SET status = :s, ledger_transaction_id = :t, "
                "confirmed_at = coalesce(confirmed_at, now()) WHERE id = :id"
            ),
            {"s": status, "t": ledger_tx, "id": dep_id},
        )
        if user_id is None and not replayed:
            await alert(
                conn,
                "ops.alert.deposit_unattributed",
                target_type="deposit",
                target_id=str(dep_id),
                provider=provider,
                tx_id=tx_id,
                address=address,
                amount=str(amount),
                currency=currency,
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


# --- withdrawals: acceptance ------------------------------------------------------------------


class WithdrawalRefused(Exception):
    """The request breaks a rule checked at request time. `code` is stable; `reason` is for the customer."""

    def __init__(self, code: str, reason: str, status: int = 422) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class WithdrawalPolicy:
    """The configurable numbers of a withdrawal, from settings."""

    approval_threshold_gbp: Decimal
    dual_approval_threshold_gbp: Decimal
    fees: dict[str, Decimal]

    def fee(self, currency: str) -> Decimal:
        return self.fees.get(currency, ZERO)

    def approvals_required(self, notional_gbp: Decimal, flagged: bool) -> int:
        """0 below the threshold (unless flagged), 1 from it, 2 (distinct) above the dual threshold."""
        if notional_gbp > self.dual_approval_threshold_gbp:
            return 2
        if notional_gbp >= self.approval_threshold_gbp or flagged:
            return 1
        return 0


@dataclass(frozen=True, slots=True)
class AcceptedWithdrawal:
    withdrawal_id: uuid.UUID
    fee: Decimal
    notional_gbp: Decimal
    approvals_required: int
    destination: Destination
    provider: str


async def accept_withdrawal(
    engine: AsyncEngine,
    *,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    price_gbp: Decimal | None,
    address_id: uuid.UUID | None,
    bank_account_id: uuid.UUID | None,
    policy: WithdrawalPolicy,
    crypto_provider: str,
    flagged: bool = False,
    now: datetime | None = None,
    on_recorded: Callable[[AcceptedWithdrawal], Awaitable[None]] | None = None,
) -> AcceptedWithdrawal:
    """Check the request-time rules and record the withdrawal (status PENDING), atomically.

    The customer's row is locked first, so two concurrent requests are counted against the rolling
    24 h limit one after the other. Crypto is valued at `price_gbp` (the caller's price source) and the
    GBP value rounds up: the limit never rounds in the customer's favour. The approval thresholds apply
    to the customer's rolling 24 h total including this request (three £9,999.99 withdrawals in a minute
    are £29,999.97, not three small ones). A halted currency is NOT refused here: the saga holds the funds
    and waits until ops lift the halt (the customer can cancel).

    `on_recorded` (the API starts the saga there) runs inside the transaction, after the row is written:
    if it raises, nothing is recorded, so a request refused or not started leaves no withdrawal behind.
    The row's advisory lock makes the saga's reserve step wait for this commit (`lock_withdrawal_for_hold`).
    """
    now = now or datetime.now(UTC)
    check_scale(currency, amount)
    if amount <= 0:
        raise WithdrawalRefused("invalid_amount", "the amount must be positive")
    if currency in FIAT:
        notional = amount
    elif currency in CRYPTO:
        if price_gbp is None or price_gbp <= 0:
            raise WithdrawalRefused("price_unavailable", f"no GBP price for {currency} right now", 503)
        notional = round_for_house("GBP", amount * price_gbp, Direction.CUSTOMER_PAYS)
    else:
        raise WithdrawalRefused("unknown_currency", f"{currency} cannot be withdrawn")
    fee = policy.fee(currency)
    async with engine.begin() as conn:
        customer = await lock_customer(conn, user_id)
        if customer is None:
            raise WithdrawalRefused("unknown_user", "no such customer", 404)
        tier, status = customer
        if status != "ACTIVE":
            raise WithdrawalRefused("account_not_active", f"the account is {status.lower()}", 403)
        if currency in FIAT:
            dest = await _bank_destination(conn, user_id, bank_account_id, now)
            provider = "bank"
        else:
            dest = await _crypto_destination(conn, user_id, currency, address_id, now)
            provider = crypto_provider
            if await wallet_screening.refuse_listed_destination(
                engine,
                user_id=user_id,
                withdrawal_id=withdrawal_id,
                currency=currency,
                address=dest.address or "",
            ):  # a listed wallet: refused in neutral words (no tipping off); compliance has the finding
                raise WithdrawalRefused(wallet_screening.REFUSAL_CODE, wallet_screening.REFUSAL_TEXT, 422)
        used = await rolling_24h_sum(
            conn,
            table="withdrawals",
            amount_column="notional_gbp",
            user_id=user_id,
            statuses=COUNTED_WITHDRAWAL_STATUSES,
            exclude_id=withdrawal_id,
            now=now,
        )
        try:
            check_limit("withdrawal", tier, WITHDRAWAL_LIMITS_GBP, used, notional)
        except LimitExceeded as e:
            raise WithdrawalRefused("withdrawal_limit_exceeded", e.reason) from e
        available = await _available(conn, user_id, currency)
        if available < amount + fee:
            raise WithdrawalRefused(
                "insufficient_funds", f"available {currency} balance does not cover {amount + fee}"
            )
        approvals = policy.approvals_required(used + notional, flagged)
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:k)"), {"k": withdrawal_lock_key(withdrawal_id)}
        )
        await conn.execute(
            text(
                "INSERT INTO withdrawals (id, user_id, currency, amount, fee, destination_address, status, "
                "provider, destination_type, address_id, bank_account_id, notional_gbp, approvals_required, "
                "flagged) VALUES (:id, :u, :c, :a, :f, :dest, 'PENDING', :p, :dt, :aid, :bid, :n, :ar, :fl) "
                "ON CONFLICT (id) DO NOTHING"
            ),
            {
                "id": withdrawal_id,
                "u": user_id,
                "c": currency,
                "a": amount,
                "f": fee,
                "dest": dest.address
                if dest.kind == "crypto"
                else f"{dest.sort_code} {dest.account_number} {dest.holder_name}",
                "p": provider,
                "dt": dest.kind,
                "aid": dest.address_id,
                "bid": dest.bank_account_id,
                "n": notional,
                "ar": approvals,
                "fl": flagged,
            },
        )
        await audit(
            conn,
            "withdrawal.requested",
            actor_id=user_id,
            actor_type="user",
            target_type="withdrawal",
            target_id=str(withdrawal_id),
            amount=str(amount),
            currency=currency,
            notional_gbp=str(notional),
            rolling_24h_gbp=str(used + notional),
            approvals_required=approvals,
        )
        accepted = AcceptedWithdrawal(
            withdrawal_id=withdrawal_id,
            fee=fee,
            notional_gbp=notional,
            approvals_required=approvals,
            destination=dest,
            provider=provider,
        )
        if on_recorded is not None:
            await on_recorded(accepted)
    return accepted


async def _available(conn: AsyncConnection, user_id: uuid.UUID, currency: str) -> Decimal:
    """The customer's available balance (a pre-check; the saga's hold is the atomic one)."""
    row = (
        await conn.execute(
            text(
                "SELECT coalesce(sum(balance - reserved_balance), 0) FROM accounts "
                "WHERE kind = 'customer' AND user_id = :u AND currency = :c"
            ),
            {"u": user_id, "c": currency},
        )
    ).first()
    return Decimal(row[0]) if row else ZERO


def withdrawal_lock_key(withdrawal_id: uuid.UUID) -> int:
    """The advisory-lock key of one withdrawal (a signed 64-bit number derived from its id)."""
    return int.from_bytes(withdrawal_id.bytes[:8], "big", signed=True)


async def lock_withdrawal_for_hold(conn: AsyncConnection, withdrawal_id: uuid.UUID) -> None:
    """Wait for the request's own transaction (advisory lock), then lock the row and check it is live
    (`holds.lock_live_withdrawal`, the one rule for every hold's owner; `holds.OwnerFinished` if not).

    Run in the transaction that creates the hold, so a stalled worker replaying an old task can't hold
    funds for a withdrawal that has meanwhile finished, and a saga whose request never committed (the API
    crashed) holds nothing."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": withdrawal_lock_key(withdrawal_id)})
    await holds.lock_live_withdrawal(conn, withdrawal_id)


async def discard_withdrawal(conn: AsyncConnection, withdrawal_id: uuid.UUID, *, reason: str) -> None:
    """Remove a request refused before anything was held (no hold, still PENDING), audited; the customer's
    list shows only withdrawals that happened."""
    deleted = (
        await conn.execute(
            text(
                "DELETE FROM withdrawals WHERE id = :id AND status = 'PENDING' AND hold_id IS NULL "
                "RETURNING user_id"
            ),
            {"id": withdrawal_id},
        )
    ).first()
    if deleted is not None:
        await audit(
            conn,
            "withdrawal.refused",
            actor_id=None,
            actor_type="system",
            target_type="withdrawal",
            target_id=str(withdrawal_id),
            reason=reason,
        )


async def _bank_destination(
    conn: AsyncConnection, user_id: uuid.UUID, bank_account_id: uuid.UUID | None, now: datetime
) -> Destination:
    """The named account, if it can receive GBP: one the customer paid in from, whose holder name was
    checked, that they confirmed with TOTP, past its cooling-off period. There is no default account:
    guessing the destination is how a stranger's payment could redirect a withdrawal."""
    if bank_account_id is None:
        raise WithdrawalRefused("bank_account_required", "name the bank account to pay (bank_account_id)")
    row = (
        await conn.execute(
            text(
                "SELECT id, sort_code, account_number, holder_name, status, usable_from FROM bank_accounts "
                "WHERE user_id = :u AND id = :b AND verified"
            ),
            {"u": user_id, "b": bank_account_id},
        )
    ).first()
    if row is None:
        raise WithdrawalRefused(
            "no_verified_bank_account",
            "GBP can only be withdrawn to a bank account you have paid in from; make a deposit first",
        )
    if row[4] == "HELD_FOR_REVIEW":
        raise WithdrawalRefused(
            "bank_account_held_for_review",
            "the account holder's name does not match yours; it is under review",
        )
    if row[4] != "CONFIRMED":
        raise WithdrawalRefused(
            "bank_account_unconfirmed", "confirm this bank account (with your authenticator code) first"
        )
    if row[5] is None or row[5] > now:
        raise WithdrawalRefused(
            "bank_account_cooling_down",
            f"a newly confirmed account can be paid from {row[5].isoformat() if row[5] else 'later'}",
        )
    return Destination(
        kind="bank", bank_account_id=row[0], sort_code=row[1], account_number=row[2], holder_name=row[3]
    )


async def _crypto_destination(
    conn: AsyncConnection, user_id: uuid.UUID, currency: str, address_id: uuid.UUID | None, now: datetime
) -> Destination:
    if address_id is None:
        raise WithdrawalRefused("address_required", "choose a whitelisted address")
    row = (
        await conn.execute(
            text(
                "SELECT id, address, tag, usable_from FROM withdrawal_addresses "
                "WHERE id = :id AND user_id = :u AND currency = :c AND removed_at IS NULL"
            ),
            {"id": address_id, "u": user_id, "c": currency},
        )
    ).first()
    if row is None:
        raise WithdrawalRefused("address_not_whitelisted", f"that is not one of your {currency} addresses")
    if row[3] > now:
        raise WithdrawalRefused(
            "address_cooling_down",
            f"a new address can be used 24 h after it was added: from {row[3].isoformat()}",
        )
    return Destination(kind="crypto", address_id=row[0], address=row[1], tag=row[2] or None)


# --- withdrawals: saga steps ------------------------------------------------------------------


def withdrawal_house_account(provider: str, currency: str) -> str:
    return HouseAccount.BANK_CASH if currency in FIAT else HouseAccount.provider(provider)


async def set_withdrawal_status(
    conn: AsyncConnection,
    withdrawal_id: uuid.UUID,
    status: WithdrawalStatus,
    *,
    reason: str | None = None,
    provider_ref: str | None = None,
    tx_hash: str | None = None,
    hold_id: uuid.UUID | None = None,
) -> None:
    """Move the row to `status` unless it is already final (a replayed step can't undo an outcome)."""
    await conn.execute(
        text(
            "UPDATE withdrawals SET status = CAST(:s AS varchar), reason = coalesce(:r, reason), "
            "provider_ref = coalesce(:pr, provider_ref), tx_hash = coalesce(:th, tx_hash), "
            "hold_id = coalesce(:h, hold_id), updated_at = now(), "
            "completed_at = CASE WHEN CAST(:s AS text) = 'COMPLETED' THEN now() ELSE completed_at END "
            "WHERE id = :id AND status NOT IN ('COMPLETED', 'FAILED', 'REJECTED', 'CANCELLED')"
        ),
        {
            "s": status.value,
            "r": reason,
            "pr": provider_ref,
            "th": tx_hash,
            "h": hold_id,
            "id": withdrawal_id,
        },
    )


async def record_provider_ref(engine: AsyncEngine, withdrawal_id: uuid.UUID, provider_ref: str) -> None:
    """Keep the venue's reference for our withdrawal as soon as its answer names it: a venue that keeps
    no id of ours (Kraken's `refid`) can be asked about the withdrawal only by this. The first one stays."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE withdrawals SET provider_ref = :r, updated_at = now() "
                "WHERE id = :id AND provider_ref IS NULL"
            ),
            {"r": provider_ref, "id": withdrawal_id},
        )


async def withdrawal_provider_ref(engine: AsyncEngine, withdrawal_id: uuid.UUID) -> str | None:
    """The venue's reference recorded for our withdrawal (None: its send never answered with one)."""
    async with engine.connect() as conn:
        ref = (
            await conn.execute(
                text("SELECT provider_ref FROM withdrawals WHERE id = :id"), {"id": withdrawal_id}
            )
        ).scalar()
    return str(ref) if ref else None


async def complete_withdrawal(
    engine: AsyncEngine,
    ledger: Ledger,
    *,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    fee: Decimal,
    hold_id: uuid.UUID,
    provider: str,
    provider_ref: str | None,
    tx_hash: str | None,
    network_fee: Decimal = ZERO,
    network_fee_payer: Literal["house", "customer"] = "house",
) -> uuid.UUID:
    """Commit the hold and mark COMPLETED: the amount to the house account it leaves from, our fee to
    revenue, and the venue's network fee (taken from our omnibus on top of the amount) booked too, so
    `provider:<venue>` moves exactly as the omnibus did and a clean day reconciles to zero.

    Network fee `house`: the customer pays `fee`; the network fee is a cost against fee revenue (as the
    venues' trading fees are). `customer`: the customer pays the network fee instead of `fee`, at most the
    `fee` held (any excess is the house's); the unused rest of the hold is released and the row's fee
    shows what was charged."""
    network_fee = max(network_fee, ZERO)
    charged = fee if network_fee_payer == "house" else min(fee, network_fee)
    revenue = charged - network_fee
    async with engine.begin() as conn:
        account = await ledger.customer_account(user_id, currency, conn)
        # The row first (as the reserve step locks it first): a late reserve waits, then sees it final.
        if charged != fee:
            await conn.execute(
                text("UPDATE withdrawals SET fee = :f WHERE id = :id AND status <> 'COMPLETED'"),
                {"f": charged, "id": withdrawal_id},
            )
        await set_withdrawal_status(
            conn, withdrawal_id, WithdrawalStatus.COMPLETED, provider_ref=provider_ref, tx_hash=tx_hash
        )
        legs = [
            Leg(account, currency, -(amount + charged), hold_id=hold_id),
            Leg(House(withdrawal_house_account(provider, currency)), currency, amount + network_fee),
        ]
        if revenue != 0:
            legs.append(Leg(House(HouseAccount.FEE_REVENUE), currency, revenue))
        result = await ledger.commit(
            hold_id,
            Posting(
                reference_type="withdrawal",
                reference_id=withdrawal_id,
                step="complete",
                kind="withdrawal",
                legs=legs,
                metadata={
                    "provider": provider,
                    "provider_ref": provider_ref,
                    "tx_hash": tx_hash,
                    "network_fee": str(network_fee),
                    "network_fee_payer": network_fee_payer,
                },
            ),
            conn,
        )
        # Any other hold of this withdrawal (a replay that raced the first reserve) ends with it.
        await holds.release_all(conn, ledger, holds.WITHDRAWAL_HOLD, withdrawal_id)
    return result.transaction_id


async def release_withdrawal(
    engine: AsyncEngine,
    ledger: Ledger,
    *,
    withdrawal_id: uuid.UUID,
    hold_id: uuid.UUID | None,
    status: WithdrawalStatus,
    reason: str,
) -> None:
    """Give the held funds back and record the final status (FAILED, REJECTED or CANCELLED).

    The status first (its row lock orders this after any late reserve of the same withdrawal), then the
    saga's own hold (a committed one raises: the money left, ops decide), then every other active hold
    of the withdrawal (`holds.release_all`), all in one transaction."""
    async with engine.begin() as conn:
        await set_withdrawal_status(conn, withdrawal_id, status, reason=reason)
        if hold_id is not None:
            await ledger.release(hold_id, conn)
        await holds.release_all(conn, ledger, holds.WITHDRAWAL_HOLD, withdrawal_id)


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    code: str
    detail: str


async def judge_decision(
    engine: AsyncEngine,
    *,
    withdrawal_id: uuid.UUID,
    requester_id: uuid.UUID,
    approver_id: uuid.UUID,
    decision: str,
    reason: str,
    proof: str | None = "no proof checked",
) -> Verdict:
    """Four eyes, checked against the users table whatever the channel (admin API or Temporal signal):
    the decision must carry proof that this staff user made it (`proof` is None when the caller verified
    the decision token, else why it failed: a bare id in a signal proves nothing), the approver must be an
    active user with the `approver` role and not the requester. Accepted decisions are recorded once
    (unique per withdrawal, approver and decision); every attempt is audited."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(text("SELECT roles, status FROM users WHERE id = :u"), {"u": approver_id})
        ).first()
        if proof is not None:
            verdict = Verdict(False, "unproven", f"the decision carries no valid proof: {proof}")
        elif approver_id == requester_id:
            verdict = Verdict(False, "self_approval", "the requester cannot decide on their own withdrawal")
        elif row is None:
            verdict = Verdict(False, "unknown_approver", "no such user")
        elif "approver" not in (row[0] or []) or row[1] != "ACTIVE":
            verdict = Verdict(False, "not_an_approver", "only active users with the approver role count")
        else:
            verdict = Verdict(True, decision, reason)
        if verdict.accepted:
            await conn.execute(
                text(
                    "INSERT INTO withdrawal_approvals (id, withdrawal_id, approver_id, decision, reason) "
                    "VALUES (:id, :w, :a, :d, :r) "
                    "ON CONFLICT (withdrawal_id, approver_id, decision) DO NOTHING"
                ),
                {"id": uuid.uuid4(), "w": withdrawal_id, "a": approver_id, "d": decision, "r": reason},
            )
            if decision == "approve":
                await conn.execute(
                    text(
                        "UPDATE withdrawals SET approved_by = :a, approved_at = now(), updated_at = now() "
                        "WHERE id = :w"
                    ),
                    {"a": approver_id, "w": withdrawal_id},
                )
        await audit(
            conn,
            f"withdrawal.{decision}" if verdict.accepted else f"withdrawal.{decision}.refused",
            actor_id=approver_id if row is not None and proof is None else None,
            actor_type="staff",
            target_type="withdrawal",
            target_id=str(withdrawal_id),
            reason=reason,
            claimed_approver=str(approver_id),
            refusal=None if verdict.accepted else verdict.code,
        )
    return verdict


async def staff_problem(conn: AsyncConnection, staff_id: uuid.UUID | None, *, role: str) -> str | None:
    """None if `staff_id` is an active user with `role`, else why not."""
    if staff_id is None:
        return "no staff user named"
    row = (await conn.execute(text("SELECT roles, status FROM users WHERE id = :u"), {"u": staff_id})).first()
    if row is None:
        return "no such user"
    if role not in (row[0] or []) or row[1] != "ACTIVE":
        return f"only active users with the {role} role may do this"
    return None


# --- halts ------------------------------------------------------------------------------------


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


# --- address whitelist ------------------------------------------------------------------------


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


# --- float ------------------------------------------------------------------------------------


async def request_top_up(
    engine: AsyncEngine,
    *,
    provider: str,
    currency: str,
    balance: Decimal,
    threshold: Decimal,
    target: Decimal,
) -> tuple[uuid.UUID, bool]:
    """Record a top-up to `target` unless one is already open for this omnibus; returns (id, created)."""
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"float:{provider}:{currency}"}
        )
        open_row = (
            await conn.execute(
                text(
                    "SELECT id FROM float_topups "
                    "WHERE provider = :p AND currency = :c AND status = 'REQUESTED'"
                ),
                {"p": provider, "c": currency},
            )
        ).first()
        if open_row is not None:
            return open_row[0], False
        top_up_id = uuid.uuid4()
        amount = target - balance
        await conn.execute(
            text(
                "INSERT INTO float_topups (id, provider, currency, balance, threshold, target, amount) "
                "VALUES (:id, :p, :c, :b, :th, :t, :a)"
            ),
            {
                "id": top_up_id,
                "p": provider,
                "c": currency,
                "b": balance,
                "th": threshold,
                "t": target,
                "a": amount,
            },
        )
        await alert(
            conn,
            "ops.alert.float_below_threshold",
            target_type="float",
            target_id=f"{provider}:{currency}",
            balance=str(balance),
            threshold=str(threshold),
            target=str(target),
            top_up=str(amount),
            top_up_id=str(top_up_id),
        )
    return top_up_id, True


async def close_top_ups(engine: AsyncEngine, *, provider: str, currency: str) -> int:
    """The omnibus is back above threshold: the open requests are done."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE float_topups SET status = 'DONE', completed_at = now() "
                "WHERE provider = :p AND currency = :c AND status = 'REQUESTED'"
            ),
            {"p": provider, "c": currency},
        )
    return int(result.rowcount or 0)

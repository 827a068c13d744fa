"""Customers' bank accounts: recorded from the deposits they pay in with, name-checked (Confirmation of
Payee), confirmed by the customer with TOTP or reviewed by ops; only a confirmed one past its cooling-off
period receives GBP withdrawals."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.payments import BankPayment
from models.payments_api import BankAccountOut
from services.alerts import alert, audit
from services.notifications import NotificationEvent, enqueue
from services.payee import NameMatch, check_payee, customer_name
from services.payments.queries import bank_account
from services.payments.refusals import PaymentRefused


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


class BankAccountRefused(PaymentRefused):
    """A bank account action the account's state does not allow (held for review, rejected, not found);
    nothing changed. `code` is stable; tell the customer or staff member `reason`."""

    default_code = "bank_account_refused"
    status = 409


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
        # The customer's chance to stop a taken-over login: written with the confirmation (issue 17).
        await enqueue(
            conn, event=NotificationEvent.BANK_ACCOUNT_CONFIRMED, user_id=user_id,
            payload={"account_ending": str(row[2])[-4:], "usable_from": usable_from.isoformat()},
            dedupe_key=f"bank_account:{account_id}:confirmed",
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


async def confirm_for_customer(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    cooling_off: timedelta,
    notify: Callable[[ConfirmedBankAccount], Awaitable[None]],
) -> BankAccountOut:
    """`confirm_bank_account`, then `notify` the customer (email) the first time it is confirmed; the
    confirmation stands whether or not the message goes out."""
    confirmed = await confirm_bank_account(
        engine, user_id=user_id, account_id=account_id, cooling_off=cooling_off
    )
    if confirmed.newly_confirmed:
        await notify(confirmed)
    return await bank_account(engine, user_id=user_id, account_id=account_id)

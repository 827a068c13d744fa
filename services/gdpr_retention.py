"""Pseudonymising a closed account once its retention period has run (MLR 2017 reg. 40: five years after
the business relationship ended; UK GDPR Art. 5(1)(e) after that).

What identifies the person goes: the email (replaced by a unique placeholder, the column stays unique), name,
phone, password and TOTP secret; the KYC details they typed (name, birth date, address, phone, source of
funds), document links, evidence files and the vendor's webhook bodies; bank holder names and account
numbers (the last two digits stay, to tell records apart); payer names and accounts on deposits; bank
destinations on withdrawals; labels on crypto addresses; session IPs and user agents, known devices and old
password hashes; in-app notifications.

What stays, because it is the business record and the ledger's proof: every id, amount, currency, status and
time; every ledger entry and journal (not one row of `ledger_entries` is touched, so every hash chain still
verifies); orders, trades, deposits, withdrawals; the append-only audit log (the database refuses changes to
it). AML records are the AML area's to retire (`services/aml`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.gdpr import RetentionCheck, RetentionResult
from models.users import UserStatus
from services import audit
from services.gdpr_export import NOTIFICATIONS_TABLE

PSEUDONYM_DOMAIN = "pseudonymised.invalid"  # RFC 2606: can never be a real mailbox


def pseudonymous_email(user_id: uuid.UUID) -> str:
    return f"closed-{user_id}@{PSEUDONYM_DOMAIN}"


async def check(engine: AsyncEngine, user_id: uuid.UUID) -> RetentionCheck:
    """When the closed account's data is due to go (None: no closure recorded, nothing to do)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT c.purge_due_at, c.pseudonymised_at FROM account_closures c "
                    "JOIN users u ON u.id = c.user_id "
                    "WHERE c.user_id = :u AND u.status = :closed"
                ),
                {"u": user_id, "closed": UserStatus.CLOSED.value},
            )
        ).first()
    if row is None:
        return RetentionCheck(user_id=user_id)
    return RetentionCheck(
        user_id=user_id, due_at=row.purge_due_at, already_pseudonymised=row.pseudonymised_at is not None
    )


# (table, statement): each runs with :u (the customer) and :email (the placeholder address).
_STATEMENTS: tuple[str, ...] = (
    "UPDATE users SET email = :email, first_name = NULL, last_name = NULL, phone = NULL, "
    "password_hash = '!pseudonymised', twofa_secret = NULL, twofa_enabled = false, updated_at = :now "
    "WHERE id = :u",
    "UPDATE kyc_vendor_events SET body = '{\"pseudonymised\": true}'::jsonb WHERE submission_id IN "
    "(SELECT id FROM kyc_submissions WHERE user_id = :u)",
    "UPDATE kyc_evidence SET content = ''::bytea, filename = 'pseudonymised' WHERE submission_id IN "
    "(SELECT id FROM kyc_submissions WHERE user_id = :u)",
    "UPDATE kyc_submissions SET details = '{\"pseudonymised\": true}'::jsonb, document_front_url = NULL, "
    "document_back_url = NULL, selfie_url = NULL, updated_at = :now WHERE user_id = :u",
    "UPDATE bank_accounts SET holder_name = 'pseudonymised', "
    "account_number = '******' || right(account_number, 2) "
    "WHERE user_id = :u",
    "UPDATE deposits SET details = details - 'payer_name' - 'payer_sort_code' - 'payer_account_number' "
    "WHERE user_id = :u AND details IS NOT NULL",
    "UPDATE withdrawals SET destination_address = NULL WHERE user_id = :u AND destination_type = 'bank'",
    "UPDATE withdrawal_addresses SET label = NULL WHERE user_id = :u",
    "UPDATE auth_sessions SET ip = NULL, user_agent = NULL WHERE user_id = :u",
    "DELETE FROM known_devices WHERE user_id = :u",
    "DELETE FROM password_history WHERE user_id = :u",
)


async def _notifications(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    """HOOK for the notifications area: its in-app feed, when the table exists here. (Its outbox's
    `recipient` addresses should go too; that table's owner knows which rows are this customer's.)"""
    exists = (
        await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": NOTIFICATIONS_TABLE})
    ).scalar()
    if not exists:
        return 0
    result = await conn.execute(
        text(f"UPDATE {NOTIFICATIONS_TABLE} SET title = 'pseudonymised', body = '' WHERE user_id = :u"),
        {"u": user_id},
    )
    return result.rowcount


async def pseudonymise(engine: AsyncEngine, user_id: uuid.UUID, *, now: datetime) -> RetentionResult:
    """Pseudonymise the closed account if its time has come; a repeat (or an early call) changes nothing."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT c.purge_due_at, c.pseudonymised_at, u.status FROM account_closures c "
                    "JOIN users u ON u.id = c.user_id WHERE c.user_id = :u FOR UPDATE"
                ),
                {"u": user_id},
            )
        ).first()
        if (
            row is None
            or row.status != UserStatus.CLOSED
            or row.pseudonymised_at is not None
            or row.purge_due_at > now
        ):
            return RetentionResult(user_id=user_id, pseudonymised=False)
        params = {"u": user_id, "email": pseudonymous_email(user_id), "now": now}
        changed = 0
        for statement in _STATEMENTS:
            changed += (await conn.execute(text(statement), params)).rowcount
        changed += await _notifications(conn, user_id)
        await conn.execute(
            text("UPDATE account_closures SET pseudonymised_at = :now WHERE user_id = :u"),
            {"u": user_id, "now": now},
        )
        await audit.record(
            conn,
            "account.pseudonymised",
            target_type="user",
            target_id=user_id,
            details={"rows_changed": changed},
        )
    return RetentionResult(user_id=user_id, pseudonymised=True, rows_changed=changed)

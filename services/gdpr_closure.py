"""Closing an account at the customer's request (UK GDPR Art. 17 as far as the law lets us,
docs/architecture.md §11).

A closure is refused, with every reason named, while the customer still has money with us (any balance or
reservation in any currency), an order that is not final, a deposit not yet credited or a withdrawal not
final: closing would strand money or cut off a saga that is still moving it. Otherwise, in one transaction,
the account is CLOSED (login and refresh refused from then on: `services/auth/context.LOGIN_STATUSES`),
every session is revoked, the closure is recorded with the date its personal data may be pseudonymised
(five years on, MLR 2017 reg. 40) and the audit log says who closed it from where.

The retention saga is started *before* that transaction commits: if the commit then fails, the saga finds no
closure when its timer fires and does nothing; if the start failed after a commit instead, the customer could
no longer log in to ask again and nothing would ever purge. A repeat start finds the saga already running.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.gdpr import ClosureOut, retention_workflow_id
from models.order_flow import FINAL_STATUSES
from models.payments import FINAL_WITHDRAWAL_STATUSES
from models.users import UserStatus
from services import audit
from services.aml import freeze as aml_freeze
from services.aml import retention as aml_retention
from services.errors import DomainError

_FINAL_ORDERS = tuple(s.value for s in FINAL_STATUSES)
_FINAL_WITHDRAWALS = tuple(s.value for s in FINAL_WITHDRAWAL_STATUSES)


class AccountNotClosable(DomainError):
    """The account still holds money or has something in flight. The detail names each reason (withdraw or
    sell the balance, wait for or cancel the orders, let deposits and withdrawals finish), then ask again.
    Nothing was changed."""

    default_code = "account_not_closable"
    status = 409


class RetentionSagas(Protocol):
    """Starts the retention saga (workflows/gdpr.py); a second start for the same customer is a no-op."""

    async def start_retention(self, user_id: uuid.UUID, purge_at: datetime) -> None: ...


def add_years(moment: datetime, years: int) -> datetime:
    """The same date `years` later (29 February -> 28 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


async def blockers(conn: AsyncConnection, user_id: uuid.UUID) -> list[tuple[str, str]]:
    """(code, sentence) for everything that stops the account closing now, in a fixed order.

    An account that is not ACTIVE (frozen after screening, suspended) or under an AML freeze is closed by
    staff, not online: the customer is told to contact support, in words that say nothing of why (no
    tipping off), and a closure cannot wipe out the freeze's marker."""
    found: list[tuple[str, str]] = []
    status = (await conn.execute(text("SELECT status FROM users WHERE id = :u"), {"u": user_id})).scalar()
    if status != UserStatus.ACTIVE or await aml_freeze.is_frozen(conn, user_id):
        found.append(("contact_support", "this account cannot be closed online; please contact support"))
    held = (
        (
            await conn.execute(
                text(
                    "SELECT currency FROM accounts WHERE kind = 'customer' AND user_id = :u "
                    "AND (balance <> 0 OR reserved_balance <> 0) ORDER BY currency"
                ),
                {"u": user_id},
            )
        )
        .scalars()
        .all()
    )
    if held:
        found.append(("balance_remaining", f"you still hold {', '.join(held)}: withdraw or sell it first"))
    open_orders = (
        await conn.execute(
            text("SELECT count(*) FROM orders WHERE user_id = :u AND NOT (status = ANY(:final))"),
            {"u": user_id, "final": list(_FINAL_ORDERS)},
        )
    ).scalar_one()
    if open_orders:
        found.append(("open_orders", f"{open_orders} order(s) still open: wait for them or cancel them"))
    pending_deposits = (
        await conn.execute(
            text("SELECT count(*) FROM deposits WHERE user_id = :u AND status = 'PENDING'"), {"u": user_id}
        )
    ).scalar_one()
    if pending_deposits:
        found.append(("pending_deposits", f"{pending_deposits} deposit(s) not yet credited"))
    pending_withdrawals = (
        await conn.execute(
            text("SELECT count(*) FROM withdrawals WHERE user_id = :u AND NOT (status = ANY(:final))"),
            {"u": user_id, "final": list(_FINAL_WITHDRAWALS)},
        )
    ).scalar_one()
    if pending_withdrawals:
        found.append(("pending_withdrawals", f"{pending_withdrawals} withdrawal(s) not yet finished"))
    return found


def _refuse(found: list[tuple[str, str]]) -> AccountNotClosable:
    """One refusal naming every reason; its code is the first reason's (`balance_remaining`, …)."""
    return AccountNotClosable(
        "the account cannot be closed yet: " + "; ".join(s for _, s in found), code=found[0][0]
    )


async def close_account(
    engine: AsyncEngine,
    user_id: uuid.UUID,
    *,
    sagas: RetentionSagas,
    retention_years: int,
    ip: str | None,
    now: datetime,
) -> ClosureOut:
    """Close the customer's account, or raise `AccountNotClosable` with nothing changed."""
    async with engine.connect() as conn:
        found = await blockers(conn, user_id)
    if found:
        raise _refuse(found)
    purge_at = add_years(now, retention_years)
    await sagas.start_retention(user_id, purge_at)
    async with engine.begin() as conn:
        # The user row, then their account rows, locked: a posting or hold that got in before us is seen
        # by the second check; one after us finds the account CLOSED.
        await conn.execute(text("SELECT id FROM users WHERE id = :u FOR UPDATE"), {"u": user_id})
        await conn.execute(
            text("SELECT id FROM accounts WHERE kind = 'customer' AND user_id = :u ORDER BY id FOR UPDATE"),
            {"u": user_id},
        )
        found = await blockers(conn, user_id)
        if found:
            raise _refuse(found)
        await conn.execute(
            text("UPDATE users SET status = :closed, updated_at = :now WHERE id = :u"),
            {"u": user_id, "closed": UserStatus.CLOSED.value, "now": now},
        )
        revoked = (
            await conn.execute(
                text(
                    "UPDATE auth_sessions SET revoked_at = :now, revoked_reason = 'account_closed' "
                    "WHERE user_id = :u AND revoked_at IS NULL"
                ),
                {"u": user_id, "now": now},
            )
        ).rowcount
        await conn.execute(
            text(
                "INSERT INTO account_closures (user_id, closed_at, purge_due_at, ip) "
                "VALUES (:u, :now, :due, :ip) "
                "ON CONFLICT (user_id) DO NOTHING"
            ),
            {"u": user_id, "now": now, "due": purge_at, "ip": ip},
        )
        await audit.record(
            conn,
            "account.closed",
            actor_id=user_id,
            actor_type="user",
            target_type="user",
            target_id=user_id,
            details={"sessions_revoked": revoked, "personal_data_kept_until": purge_at.isoformat()},
            ip=ip,
        )
        await aml_retention.relationship_ended(conn, user_id, now)  # MLR 2017 reg. 40: five years from now
    return ClosureOut(
        status=UserStatus.CLOSED.value,
        closed_at=now,
        personal_data_kept_until=purge_at,
        workflow_id=retention_workflow_id(user_id),
    )

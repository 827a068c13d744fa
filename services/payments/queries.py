"""What the payments API lists and shows, as its response models: a customer's deposits, withdrawals,
bank accounts, balances and ledger trail, and the staff queues of withdrawals. Customers only ever see
their own records: another customer's id is `NotFound` (404), not 403."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.money import money
from models.payments import withdrawal_workflow_id
from models.payments_api import (
    BankAccountOut,
    DepositOut,
    DepositPage,
    PendingWithdrawal,
    WithdrawalOut,
    WithdrawalPage,
)
from services.errors import DomainError
from services.pagination import fetch_page


class NotFound(DomainError):
    """No such record of this customer (or none in the state asked for). Nothing to retry."""

    default_code = "not_found"
    status = 404


_WITHDRAWAL_COLUMNS = (
    "id, currency, amount, fee, notional_gbp, status, reason, destination_address, approvals_required, "
    "provider_ref, tx_hash, created_at, completed_at"
)
_BANK_ACCOUNT_COLUMNS = (
    "id, holder_name, sort_code, account_number, verified, status, name_match, usable_from"
)


def _withdrawal_out(r: Any) -> WithdrawalOut:
    return WithdrawalOut(
        id=r[0],
        currency=r[1],
        amount=money(r[2], r[1]),
        fee=money(r[3], r[1]),
        notional_gbp=None if r[4] is None else money(r[4], "GBP"),
        status=r[5],
        reason=r[6],
        destination=r[7],
        approvals_required=r[8],
        provider_ref=r[9],
        tx_hash=r[10],
        created_at=r[11],
        completed_at=r[12],
        workflow_id=withdrawal_workflow_id(r[0]),
    )


async def list_deposits(
    engine: AsyncEngine, *, user_id: uuid.UUID, limit: int, cursor: str | None = None
) -> DepositPage:
    """The customer's deposits, newest first; `cursor` from the previous page."""
    shown, next_cursor = await fetch_page(
        engine,
        select="SELECT id, currency, amount, status, payment_method, reference, created_at, confirmed_at "
        "FROM deposits",
        where="user_id = :u",
        params={"u": user_id},
        limit=limit,
        cursor=cursor,
        position=lambda r: (r[6], r[0]),
    )
    deposits = [
        DepositOut(
            id=r[0],
            currency=r[1],
            amount=money(r[2], r[1]),
            status=r[3],
            payment_method=r[4],
            reference=r[5],
            created_at=r[6],
            confirmed_at=r[7],
        )  # fmt: skip
        for r in shown
    ]
    return DepositPage(deposits=deposits, next_cursor=next_cursor)


async def find_withdrawal(
    engine: AsyncEngine, *, user_id: uuid.UUID, withdrawal_id: uuid.UUID
) -> WithdrawalOut | None:
    """The customer's withdrawal, or None (another customer's is None too)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals WHERE id = :id AND user_id = :u"),
                {"id": withdrawal_id, "u": user_id},
            )
        ).first()
    return None if row is None else _withdrawal_out(row)


async def own_withdrawal(
    engine: AsyncEngine, *, user_id: uuid.UUID, withdrawal_id: uuid.UUID
) -> WithdrawalOut:
    """The customer's withdrawal; `NotFound` if there is none of theirs with that id."""
    found = await find_withdrawal(engine, user_id=user_id, withdrawal_id=withdrawal_id)
    if found is None:
        raise NotFound("no such withdrawal")
    return found


async def list_withdrawals(
    engine: AsyncEngine, *, user_id: uuid.UUID, limit: int, cursor: str | None = None
) -> WithdrawalPage:
    """The customer's withdrawals, newest first; `cursor` from the previous page."""
    shown, next_cursor = await fetch_page(
        engine,
        select=f"SELECT {_WITHDRAWAL_COLUMNS} FROM withdrawals",
        where="user_id = :u",
        params={"u": user_id},
        limit=limit,
        cursor=cursor,
        position=lambda r: (r[11], r[0]),
    )
    return WithdrawalPage(withdrawals=[_withdrawal_out(r) for r in shown], next_cursor=next_cursor)


async def approval_queue(engine: AsyncEngine) -> list[PendingWithdrawal]:
    """Withdrawals waiting for approval, oldest first, with the approvals given so far."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_WITHDRAWAL_COLUMNS}, user_id, coalesce((SELECT array_agg(approver_id) "
                    "FROM withdrawal_approvals a WHERE a.withdrawal_id = w.id AND a.decision = 'approve'), "
                    "'{}') FROM withdrawals w WHERE status = 'AWAITING_APPROVAL' ORDER BY created_at"
                )
            )
        ).all()
    return [
        PendingWithdrawal(**_withdrawal_out(r).model_dump(), user_id=r[13], approvals=list(r[14] or []))
        for r in rows
    ]


async def attention_queue(engine: AsyncEngine) -> list[PendingWithdrawal]:
    """Withdrawals in NEEDS_ATTENTION (outcome unknown or books incomplete; funds held), oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_WITHDRAWAL_COLUMNS}, user_id FROM withdrawals w "
                    "WHERE status = 'NEEDS_ATTENTION' ORDER BY updated_at"
                )
            )
        ).all()
    return [PendingWithdrawal(**_withdrawal_out(r).model_dump(), user_id=r[13], approvals=[]) for r in rows]


async def list_bank_accounts(engine: AsyncEngine, *, user_id: uuid.UUID) -> list[BankAccountOut]:
    """The customer's bank accounts, oldest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_BANK_ACCOUNT_COLUMNS} FROM bank_accounts WHERE user_id = :u "
                    "ORDER BY created_at"
                ),
                {"u": user_id},
            )
        ).all()
    return [BankAccountOut.model_validate(dict(r._mapping)) for r in rows]


async def bank_account(engine: AsyncEngine, *, user_id: uuid.UUID, account_id: uuid.UUID) -> BankAccountOut:
    """One of the customer's bank accounts; `NotFound` if there is none of theirs with that id."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_BANK_ACCOUNT_COLUMNS} FROM bank_accounts WHERE id = :id AND user_id = :u"),
                {"id": account_id, "u": user_id},
            )
        ).first()
    if row is None:
        raise NotFound("no such bank account")
    return BankAccountOut.model_validate(dict(row._mapping))

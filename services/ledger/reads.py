"""What the ledger shows: balances, entries (paged), per-currency totals and holds.

Reads take the engine and run on a connection of their own; they never lock. The cursor of
`entries` is the one keyset cursor of `services.pagination`: the position of the last entry shown.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ledger.errors import UnknownAccount
from services.pagination import fetch_page

MAX_PAGE = 500


class Balance(BaseModel):
    account_id: uuid.UUID | None
    currency: str
    balance: Decimal
    available: Decimal
    reserved: Decimal


class HoldView(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    currency: str
    amount: Decimal
    consumed: Decimal
    status: str
    reference_type: str
    reference_id: uuid.UUID


class Entry(BaseModel):
    id: uuid.UUID
    transaction_id: uuid.UUID
    account_id: uuid.UUID
    seq: int
    currency: str
    amount: Decimal
    balance_after: Decimal
    reference_type: str
    reference_id: uuid.UUID
    created_at: datetime


class EntryPage(BaseModel):
    entries: list[Entry]
    next_cursor: str | None


class CurrencyTotals(BaseModel):
    currency: str
    customer: Decimal
    house: Decimal
    total: Decimal  # customer + house: zero when the books balance
    customer_reserved: Decimal


_BALANCE_COLUMNS = "SELECT id, currency, balance, available_balance, reserved_balance FROM accounts "


async def balances(
    engine: AsyncEngine, user_id: uuid.UUID, *, conn: AsyncConnection | None = None
) -> list[Balance]:
    """The customer's accounts, one per currency they ever used. `conn`: read on a connection the caller
    already holds (the API's read connection, which has just authenticated the customer) instead of
    checking out another one. One statement: consistent even on a connection in autocommit."""
    query = text(_BALANCE_COLUMNS + "WHERE kind = 'customer' AND user_id = :u ORDER BY currency")
    if conn is not None:
        rows = (await conn.execute(query, {"u": user_id})).all()
    else:
        async with engine.connect() as c:
            rows = (await c.execute(query, {"u": user_id})).all()
    return [
        Balance(account_id=r[0], currency=r[1], balance=r[2], available=r[3], reserved=r[4]) for r in rows
    ]


async def balance(engine: AsyncEngine, account_id: uuid.UUID) -> Balance:
    """One account's balances; UnknownAccount if there is no such account."""
    async with engine.connect() as c:
        row = (await c.execute(text(_BALANCE_COLUMNS + "WHERE id = :id"), {"id": account_id})).first()
    if row is None:
        raise UnknownAccount(f"unknown account {account_id}")
    return Balance(account_id=row[0], currency=row[1], balance=row[2], available=row[3], reserved=row[4])


async def house_balance(engine: AsyncEngine, code: str, currency: str) -> Balance:
    """A house account's balances: the sum over its shards."""
    async with engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT coalesce(sum(balance), 0), coalesce(sum(available_balance), 0), "
                    "coalesce(sum(reserved_balance), 0) FROM accounts "
                    "WHERE kind = 'house' AND code = :code AND currency = :cur"
                ),
                {"code": code, "cur": currency},
            )
        ).one()
    return Balance(account_id=None, currency=currency, balance=row[0], available=row[1], reserved=row[2])


async def entries(
    engine: AsyncEngine, account_ids: Sequence[uuid.UUID], *, limit: int = 50, cursor: str | None = None
) -> EntryPage:
    """Entries of the given accounts, newest first, with an opaque cursor for the next page."""
    if not account_ids:
        return EntryPage(entries=[], next_cursor=None)
    shown, next_cursor = await fetch_page(
        engine,
        select="SELECT id, transaction_id, account_id, seq, currency, amount, balance_after, "
        "reference_type, reference_id, created_at FROM ledger_entries",
        where="account_id = ANY(:ids)",
        params={"ids": list(account_ids)},
        limit=max(1, min(limit, MAX_PAGE)),
        cursor=cursor,
        position=lambda r: (r[9], r[0]),
    )
    page = [
        Entry(
            id=r[0],
            transaction_id=r[1],
            account_id=r[2],
            seq=r[3],
            currency=r[4],
            amount=r[5],
            balance_after=r[6],
            reference_type=r[7],
            reference_id=r[8],
            created_at=r[9],
        )
        for r in shown
    ]
    return EntryPage(entries=page, next_cursor=next_cursor)


async def totals(engine: AsyncEngine) -> list[CurrencyTotals]:
    """Per currency: customer and house sums. `total` is zero when the books balance."""
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT cur.code, "
                    "coalesce(sum(a.balance) FILTER (WHERE a.kind = 'customer'), 0), "
                    "coalesce(sum(a.balance) FILTER (WHERE a.kind = 'house'), 0), "
                    "coalesce(sum(a.reserved_balance) FILTER (WHERE a.kind = 'customer'), 0) "
                    "FROM currencies cur LEFT JOIN accounts a ON a.currency = cur.code "
                    "GROUP BY cur.code ORDER BY cur.code"
                )
            )
        ).all()
    return [
        CurrencyTotals(currency=r[0], customer=r[1], house=r[2], total=r[1] + r[2], customer_reserved=r[3])
        for r in rows
    ]


async def holds_for(engine: AsyncEngine, reference_type: str, reference_id: uuid.UUID) -> list[HoldView]:
    """Every hold taken for one business reference (an order, a withdrawal), oldest first."""
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT id, account_id, currency, amount, consumed, status, reference_type, reference_id "
                    "FROM holds WHERE reference_type = :rt AND reference_id = :rid ORDER BY created_at"
                ),
                {"rt": reference_type, "rid": reference_id},
            )
        ).all()
    return [
        HoldView(
            id=r[0],
            account_id=r[1],
            currency=r[2],
            amount=r[3],
            consumed=r[4],
            status=r[5],
            reference_type=r[6],
            reference_id=r[7],
        )
        for r in rows
    ]

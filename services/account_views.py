"""The customer's accounts as the API shows them: balances per currency and the ledger entries behind them.

Every currency we hold is listed, with zeros where the customer has no account yet. Amounts are strings at
the currency's scale (`models.money`). The history is the customer's ledger entries, newest first, paged
with the one cursor codec (`services.pagination`).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from models.api import AccountBalance, BalancesOut, LedgerEntryOut, LedgerOut
from models.assets import SCALES
from models.money import money
from services.errors import DomainError
from services.ledger import Ledger
from services.pagination import decode_keyset

ZERO = Decimal(0)


class UnknownCurrency(DomainError):
    """We hold no such currency. Use one of `models.assets.SCALES`."""

    default_code = "unknown_currency"
    status = 422


async def balances(*, ledger: Ledger, user_id: uuid.UUID, conn: AsyncConnection | None = None) -> BalancesOut:
    """Balance, available and reserved amount per currency, GBP first (read on `conn` when given)."""
    rows = {b.currency: b for b in await ledger.balances(user_id, conn=conn)}
    out = []
    for currency in sorted(set(SCALES) | set(rows), key=lambda c: (c != "GBP", c)):
        b = rows.get(currency)
        out.append(
            AccountBalance(
                currency=currency,
                balance=money(b.balance if b else ZERO, currency),
                available=money(b.available if b else ZERO, currency),
                reserved=money(b.reserved if b else ZERO, currency),
            )
        )
    return BalancesOut(balances=out)


async def ledger_history(
    *, ledger: Ledger, user_id: uuid.UUID, currency: str | None, limit: int, cursor: str | None
) -> LedgerOut:
    """The customer's ledger entries, newest first, optionally of one currency."""
    if currency is not None and currency not in SCALES:
        raise UnknownCurrency(f"unknown currency {currency}", field="query.currency")
    if cursor:
        decode_keyset(cursor)  # refuses a cursor we did not issue before the ledger reads anything
    accounts = [
        b.account_id
        for b in await ledger.balances(user_id)
        if b.account_id is not None and (currency is None or b.currency == currency)
    ]
    page = await ledger.entries(accounts, limit=limit, cursor=cursor)
    return LedgerOut(
        entries=[
            LedgerEntryOut(
                id=e.id,
                created_at=e.created_at,
                currency=e.currency,
                amount=money(e.amount, e.currency),
                balance_after=money(e.balance_after, e.currency),
                reference_type=e.reference_type,
                reference_id=e.reference_id,
                transaction_id=e.transaction_id,
            )
            for e in page.entries
        ],
        next_cursor=page.next_cursor,
    )

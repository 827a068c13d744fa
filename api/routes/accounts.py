"""The customer's accounts (seed §B): balances per currency and the ledger history behind them.

Every currency we hold is listed, with zeros where the customer has no account yet. Amounts are strings
at the currency's scale. The history is the customer's ledger entries, newest first, with an opaque cursor.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth_deps import VerifiedUser, problem_responses
from api.deps import LedgerDep, SessionDep
from api.errors import ProblemError
from models.api import AccountBalance, BalancesOut, LedgerEntryOut, LedgerOut
from models.assets import SCALES, quantum
from models.users import User
from services.ledger import InvalidCursor

router = APIRouter(prefix="/accounts", tags=["accounts"])
ZERO = Decimal(0)


async def customer(user: VerifiedUser, session: SessionDep) -> User:
    """The verified customer, with the auth query's connection handed back to the pool at once.

    Routes that then read through the engine would otherwise hold two pooled connections per request,
    and enough concurrent requests would each hold one and wait for a second, forever."""
    await session.commit()  # ends the auth transaction; the session factory doesn't expire on commit
    return user


Customer = Annotated[User, Depends(customer)]


def money(value: Decimal, currency: str) -> str:
    return format(value.quantize(quantum(currency)), "f")


@router.get("/balances", response_model=BalancesOut, responses=problem_responses(401, 403))
async def balances(user: Customer, ledger: LedgerDep) -> BalancesOut:
    """Your balance, available and reserved amount per currency."""
    rows = {b.currency: b for b in await ledger.balances(user.id)}
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


@router.get("/ledger", response_model=LedgerOut, responses=problem_responses(401, 403, 422))
async def ledger_history(
    user: Customer,
    ledger: LedgerDep,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3,5}$", description="Only this currency.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> LedgerOut:
    """Your ledger entries, newest first: every credit and debit with the balance after it."""
    if currency is not None and currency not in SCALES:
        raise ProblemError(
            422,
            "unknown_currency",
            f"unknown currency {currency}",
            errors=[{"field": "query.currency", "message": "unknown currency", "type": "unknown_currency"}],
        )
    accounts = [
        b.account_id
        for b in await ledger.balances(user.id)
        if b.account_id is not None and (currency is None or b.currency == currency)
    ]
    try:
        page = await ledger.entries(accounts, limit=limit, cursor=cursor)
    except (InvalidCursor, ValueError) as e:  # the ledger's decoder lets a short cursor through
        raise ProblemError(
            422,
            "invalid_cursor",
            "not a cursor we issued; start without one",
            errors=[{"field": "query.cursor", "message": "malformed cursor", "type": "invalid_cursor"}],
        ) from e
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

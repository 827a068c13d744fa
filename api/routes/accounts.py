"""The customer's accounts (docs/architecture.md §B): balances per currency and the ledger history behind
them.

The one place for both (`/api/v1/balances` and `/api/v1/ledger` were the same data in another shape);
the work is `services.account_views`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api.auth_deps import VerifiedReader, VerifiedUser, problem_responses
from api.deps import LedgerDep, ReadConnection, SessionDep
from models.api import BalancesOut, LedgerOut
from models.users import User
from services import account_views
from services.pagination import CURSOR_MAX_LENGTH

router = APIRouter(prefix="/accounts", tags=["accounts"])


async def customer(user: VerifiedUser, session: SessionDep) -> User:
    """The verified customer, with the auth query's connection handed back to the pool at once.

    Routes that then read through the engine would otherwise hold two pooled connections per request,
    and enough concurrent requests would each hold one and wait for a second, forever."""
    await session.commit()  # ends the auth transaction; the session factory doesn't expire on commit
    return user


Customer = Annotated[User, Depends(customer)]


@router.get("/balances", response_model=BalancesOut, responses=problem_responses(401, 403))
async def balances(reader: VerifiedReader, conn: ReadConnection, ledger: LedgerDep) -> BalancesOut:
    """Your balance, available and reserved amount per currency."""
    # Read on the connection that has just authenticated the customer: one checkout, no transaction.
    return await account_views.balances(ledger=ledger, user_id=reader.user_id, conn=conn)


@router.get("/ledger", response_model=LedgerOut, responses=problem_responses(401, 403, 422))
async def ledger_history(
    user: Customer,
    ledger: LedgerDep,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3,5}$", description="Only this currency.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> LedgerOut:
    """Your ledger entries, newest first: every credit and debit with the balance after it."""
    return await account_views.ledger_history(
        ledger=ledger, user_id=user.id, currency=currency, limit=limit, cursor=cursor
    )

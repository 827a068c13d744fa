"""The customer's payments API (seed §C.4, §C.7): deposits and the bank's webhook
(`api/routes/deposits.py`), withdrawals (`withdrawals.py`), where they may go (`bank_accounts.py`), and
here balances and the ledger trail. Money in JSON is a string at the currency's scale. Customers only
ever see their own records: another customer's id answers 404, not 403.

Routes are a dependency, one service call (`services.payments`) and a response model
(`models/payments_api.py`); the clients of the bank and venues are built once in the app's lifespan
(`api/payment_clients.py`) and the sagas are reached through `api/sagas.py`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth_deps import problem_responses
from api.deps import EngineDep, SettingsDep
from api.routes import bank_accounts, deposits, withdrawals
from api.routes.accounts import Customer
from models.payments_api import BalanceOut, LedgerPage
from services import payments
from services.ledger import Ledger

router = APIRouter()  # the sub-routers tag their own routes
router.include_router(deposits.router)
router.include_router(withdrawals.router)
router.include_router(bank_accounts.router)


@router.get(
    "/balances", tags=["payments"], response_model=list[BalanceOut], responses=problem_responses(401, 403)
)
async def balances(user: Customer, engine: EngineDep, settings: SettingsDep) -> list[BalanceOut]:
    """Your balances per currency (reserved = held for pending orders and withdrawals)."""
    return await payments.balances(
        Ledger(engine, house_shards=settings.house_account_shards), user_id=user.id
    )


@router.get(
    "/ledger", tags=["payments"], response_model=LedgerPage, responses=problem_responses(401, 403, 422)
)
async def ledger_trail(
    user: Customer,
    engine: EngineDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> LedgerPage:
    """Your ledger entries, newest first (every credit and debit, with the balance after it)."""
    ledger = Ledger(engine, house_shards=settings.house_account_shards)
    return await payments.ledger_page(ledger, user_id=user.id, limit=limit, cursor=cursor)

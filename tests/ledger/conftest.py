"""Ledger fixtures: a Ledger over the session database and fresh customers per test."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import House, HouseAccount, Ledger, Leg, Posting

NewCustomer = Callable[..., Awaitable[uuid.UUID]]


@pytest.fixture
def ledger(engine: AsyncEngine) -> Ledger:
    return Ledger(engine, house_shards=4)


async def create_user(engine: AsyncEngine) -> uuid.UUID:
    uid = uuid.uuid4()
    async with engine.begin() as c:
        await c.execute(
            text("INSERT INTO users (id, email, password_hash) VALUES (:id, :e, 'x')"),
            {"id": uid, "e": f"{uid}@ledger.test"},
        )
    return uid


async def deposit(ledger: Ledger, account: uuid.UUID, currency: str, amount: Decimal) -> None:
    """Fund a customer account the way a bank deposit does: bank cash -> customer."""
    await ledger.post(
        Posting(
            reference_type="DEPOSIT",
            reference_id=uuid.uuid4(),
            step="credit",
            kind="deposit",
            legs=[
                Leg(House(HouseAccount.BANK_CASH), currency, -amount),
                Leg(account, currency, amount),
            ],
        )
    )


@pytest.fixture
def new_account(engine: AsyncEngine, ledger: Ledger) -> Callable[..., Awaitable[uuid.UUID]]:
    async def make(currency: str = "GBP", funded: Decimal | None = None) -> uuid.UUID:
        user = await create_user(engine)
        account = await ledger.customer_account(user, currency)
        if funded:
            await deposit(ledger, account, currency, funded)
        return account

    return make

"""Hypothesis state machine: random sequences of ledger operations against an in-memory model.

The machine runs on its own event loop and engine (Hypothesis' stateful rules are synchronous),
against the session's real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.ledger import (
    HoldNotActive,
    House,
    HouseAccount,
    InsufficientFunds,
    Ledger,
    Leg,
    Posting,
)

T = TypeVar("T")
amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("400"), places=2)


@dataclass
class ModelHold:
    id: uuid.UUID
    account: int
    amount: Decimal
    order: uuid.UUID
    status: str = "active"


class LedgerMachine(RuleBasedStateMachine):
    database_url: str = ""
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        url = self.database_url
        self.engine: AsyncEngine = create_async_engine(url, pool_size=2)
        self.ledger = Ledger(self.engine, house_shards=2)
        self.accounts: list[uuid.UUID] = []
        self.balance: list[Decimal] = []
        self.reserved: list[Decimal] = []
        self.last_posting: Posting | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.engine.dispose())
        self.loop.close()

    @initialize()
    def open_accounts(self) -> None:
        async def make() -> uuid.UUID:
            uid = uuid.uuid4()
            async with self.engine.begin() as c:
                await c.execute(
                    text("INSERT INTO users (id, email, password_hash) VALUES (:i, :e, 'x')"),
                    {"i": uid, "e": f"{uid}@model.test"},
                )
            return await self.ledger.customer_account(uid, "GBP")

        for _ in range(3):
            self.accounts.append(self.run(make()))
            self.balance.append(Decimal(0))
            self.reserved.append(Decimal(0))

    def available(self, i: int) -> Decimal:
        return self.balance[i] - self.reserved[i]

    @rule(i=st.integers(0, 2), amount=amounts)
    def deposit(self, i: int, amount: Decimal) -> None:
        posting = Posting(
            reference_type="MODEL",
            reference_id=uuid.uuid4(),
            step="deposit",
            legs=[Leg(House(HouseAccount.BANK_CASH), "GBP", -amount), Leg(self.accounts[i], "GBP", amount)],
        )
        assert not self.run(self.ledger.post(posting)).replayed
        self.balance[i] += amount
        self.last_posting = posting

    @rule(i=st.integers(0, 2), j=st.integers(0, 2), amount=amounts)
    def transfer(self, i: int, j: int, amount: Decimal) -> None:
        if i == j:
            return
        posting = Posting(
            reference_type="MODEL",
            reference_id=uuid.uuid4(),
            step="transfer",
            legs=[Leg(self.accounts[i], "GBP", -amount), Leg(self.accounts[j], "GBP", amount)],
        )
        if amount > self.available(i):
            with pytest.raises(InsufficientFunds):
                self.run(self.ledger.post(posting))
            return
        self.run(self.ledger.post(posting))
        self.balance[i] -= amount
        self.balance[j] += amount
        self.last_posting = posting

    @rule(target=holds, i=st.integers(0, 2), amount=amounts)
    def reserve(self, i: int, amount: Decimal) -> ModelHold | None:
        order = uuid.uuid4()
        call = self.ledger.reserve(
            self.accounts[i], "GBP", amount, reference_type="MODEL", reference_id=order
        )
        if amount > self.available(i):
            with pytest.raises(InsufficientFunds):
                self.run(call)
            return None
        result = self.run(call)
        self.reserved[i] += amount
        return ModelHold(result.hold_id, i, amount, order)

    @rule(hold=holds, fraction=st.integers(1, 100))
    def commit(self, hold: ModelHold | None, fraction: int) -> None:
        if hold is None:
            return
        used = (hold.amount * fraction / 100).quantize(Decimal("0.01"))
        if used == 0:
            return
        posting = Posting(
            reference_type="MODEL",
            reference_id=hold.order,
            step=f"settle-{uuid.uuid4()}",
            legs=[
                Leg(self.accounts[hold.account], "GBP", -used, hold_id=hold.id),
                Leg(House(HouseAccount.FEE_REVENUE), "GBP", used),
            ],
        )
        if hold.status != "active":
            with pytest.raises(HoldNotActive):
                self.run(self.ledger.commit(hold.id, posting))
            return
        self.run(self.ledger.commit(hold.id, posting))
        hold.status = "committed"
        self.balance[hold.account] -= used
        self.reserved[hold.account] -= hold.amount
        self.last_posting = posting

    @rule(hold=holds)
    def release(self, hold: ModelHold | None) -> None:
        if hold is None:
            return
        if hold.status == "committed":
            with pytest.raises(HoldNotActive):
                self.run(self.ledger.release(hold.id))
            return
        released_now = self.run(self.ledger.release(hold.id))
        assert released_now == (hold.status == "active")
        if hold.status == "active":
            self.reserved[hold.account] -= hold.amount
        hold.status = "released"

    @rule()
    def replay_last(self) -> None:
        if self.last_posting is not None:
            assert self.run(self.ledger.post(self.last_posting)).replayed

    @rule(hold=consumes(holds))
    def forget(self, hold: ModelHold | None) -> None:
        """Drop a hold from the bundle so the machine also explores long-lived ones less often."""

    @invariant()
    def matches_model(self) -> None:
        if not self.accounts:
            return
        for i, acc in enumerate(self.accounts):
            b = self.run(self.ledger.balance(acc))
            assert b.balance == self.balance[i]
            assert b.reserved == self.reserved[i]
            assert b.available == self.available(i) >= 0


def test_ledger_matches_in_memory_model(database_url: str) -> None:
    LedgerMachine.database_url = database_url
    LedgerMachine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    LedgerMachine.TestCase().runTest()

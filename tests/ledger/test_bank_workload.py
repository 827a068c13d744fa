"""A bank workload in the spirit of Jepsen's: many concurrent workers move money between 50 accounts
(transfers, reserves, commits, releases, and deliberate duplicate retries) while a reader checks the
totals. Afterwards every invariant holds, no idempotency key took effect twice, and `verify()` passes.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import (
    HoldNotActive,
    House,
    HouseAccount,
    InsufficientFunds,
    Ledger,
    Leg,
    Posting,
)
from tests.ledger.conftest import create_user, deposit

ACCOUNTS = 50
WORKERS = 16
OPS_PER_WORKER = 40
START = Decimal("1000.00")
FEE = Decimal("0.05")


@dataclass
class Model:
    """What the balances must be, built only from operations the ledger said took effect."""

    balance: dict[uuid.UUID, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    reserved: dict[uuid.UUID, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    fees: Decimal = Decimal(0)
    effective_keys: list[str] = field(default_factory=list)


async def test_bank_workload(engine: AsyncEngine) -> None:
    ledger = Ledger(engine, house_shards=8)
    run = uuid.uuid4().hex[:8]
    ref_type = f"BANK{run}"
    accounts = []
    for _ in range(ACCOUNTS):
        acc = await ledger.customer_account(await create_user(engine), "GBP")
        await deposit(ledger, acc, "GBP", START)
        accounts.append(acc)
    model = Model()
    for acc in accounts:
        model.balance[acc] = START
    stop = asyncio.Event()
    reader_checks = 0
    reader_failures: list[str] = []

    async def reader() -> None:
        nonlocal reader_checks
        while not stop.is_set():
            async with engine.connect() as c:
                rows = (
                    await c.execute(
                        text(
                            "SELECT currency, sum(balance), "
                            "min(available_balance) FILTER (WHERE kind='customer'), "
                            "bool_and(balance = available_balance + reserved_balance) FROM accounts "
                            "GROUP BY currency"
                        )
                    )
                ).all()
            for currency, total, min_available, consistent in rows:
                if total != 0:
                    reader_failures.append(f"{currency} total {total}")
                if min_available is not None and min_available < 0:
                    reader_failures.append(f"{currency} negative available {min_available}")
                if not consistent:
                    reader_failures.append(f"{currency} balance != available + reserved")
            reader_checks += 1
            await asyncio.sleep(0.005)

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        open_holds: list[tuple[uuid.UUID, uuid.UUID, Decimal, uuid.UUID]] = []  # hold, account, amount, order
        for i in range(OPS_PER_WORKER):
            op = rng.random()
            if op < 0.4:
                a, b = rng.sample(accounts, 2)
                amount = Decimal(rng.randint(1, 30000)) / 100
                posting = Posting(
                    reference_type=ref_type,
                    reference_id=uuid.uuid4(),
                    step="transfer",
                    legs=[Leg(a, "GBP", -amount), Leg(b, "GBP", amount)],
                )
                try:
                    first = await ledger.post(posting)
                except InsufficientFunds:
                    continue
                assert not first.replayed
                model.balance[a] -= amount
                model.balance[b] += amount
                model.effective_keys.append(posting.idempotency_key)
                if rng.random() < 0.3:  # a retry of a call that already succeeded
                    again = await ledger.post(posting)
                    assert again.replayed and again.transaction_id == first.transaction_id
            elif op < 0.65 or not open_holds:
                a = rng.choice(accounts)
                amount = Decimal(rng.randint(100, 20000)) / 100
                order = uuid.uuid4()
                try:
                    hold = await ledger.reserve(a, "GBP", amount, reference_type=ref_type, reference_id=order)
                except InsufficientFunds:
                    continue
                if rng.random() < 0.3:
                    dup = await ledger.reserve(a, "GBP", amount, reference_type=ref_type, reference_id=order)
                    assert dup.replayed and dup.hold_id == hold.hold_id
                model.reserved[a] += amount
                open_holds.append((hold.hold_id, a, amount, order))
            else:
                hold_id, a, amount, order = open_holds.pop(rng.randrange(len(open_holds)))
                if rng.random() < 0.5:
                    assert await ledger.release(hold_id)
                    model.reserved[a] -= amount
                    if rng.random() < 0.3:
                        assert not await ledger.release(hold_id)
                    continue
                used = (amount * Decimal(rng.randint(10, 100)) / 100).quantize(Decimal("0.01"))
                pay = used - FEE if used > FEE else used
                fee = used - pay
                b = rng.choice([x for x in accounts if x != a])
                legs = [Leg(a, "GBP", -used, hold_id=hold_id), Leg(b, "GBP", pay)]
                if fee:
                    legs.append(Leg(House(HouseAccount.FEE_REVENUE), "GBP", fee))
                posting = Posting(reference_type=ref_type, reference_id=order, step="settle", legs=legs)
                first = await ledger.commit(hold_id, posting)
                model.balance[a] -= used
                model.reserved[a] -= amount
                model.balance[b] += pay
                model.fees += fee
                model.effective_keys.append(posting.idempotency_key)
                if rng.random() < 0.3:
                    assert (await ledger.post(posting)).replayed
                    try:
                        await ledger.release(hold_id)
                        raise AssertionError("a committed hold was released")
                    except HoldNotActive:
                        pass
            if i % 10 == 0:
                await asyncio.sleep(0)
        for hold_id, a, amount, _ in open_holds:  # leave nothing reserved
            await ledger.release(hold_id)
            model.reserved[a] -= amount

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(worker(s) for s in range(WORKERS)))
    stop.set()
    await reading

    assert reader_failures == []
    assert reader_checks > 0
    for acc in accounts:
        b = await ledger.balance(acc)
        assert b.balance == model.balance[acc], acc
        assert b.reserved == model.reserved[acc] == 0
        assert b.available == b.balance
    assert sum(model.balance.values()) + model.fees == START * ACCOUNTS

    async with engine.connect() as c:
        keys = (
            (
                await c.execute(
                    text("SELECT idempotency_key FROM ledger_transactions WHERE reference_type = :rt"),
                    {"rt": ref_type},
                )
            )
            .scalars()
            .all()
        )
    assert sorted(keys) == sorted(model.effective_keys)  # every key once, and only effective ones
    assert len(set(keys)) == len(keys)
    totals = {t.currency: t for t in await ledger.totals()}
    assert totals["GBP"].total == 0
    report = await ledger.verify()
    assert report.ok, report.first_problem
    assert report.entries_checked >= len(keys) * 2

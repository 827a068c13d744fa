"""Each ledger operation, its typed errors, and idempotent replay (sequential and concurrent)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import (
    CurrencyMismatch,
    HoldNotActive,
    House,
    HouseAccount,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidCursor,
    Ledger,
    Leg,
    Posting,
    UnbalancedPosting,
    UnknownAccount,
)
from tests.ledger.conftest import create_user

D = Decimal
NewAccount = Callable[..., Awaitable[uuid.UUID]]


def trade_settlement(order: uuid.UUID, hold: uuid.UUID, gbp: uuid.UUID, btc: uuid.UUID) -> Posting:
    """A buy of 0.01 BTC for £680 plus £1.02 fee, the provider charging £0.68."""
    return Posting(
        reference_type="ORDER",
        reference_id=order,
        step="settle",
        kind="trade",
        legs=[
            Leg(gbp, "GBP", D("-681.02"), hold_id=hold),
            Leg(House(HouseAccount.FEE_REVENUE), "GBP", D("1.02") - D("0.68")),
            Leg(House(HouseAccount.provider("binance")), "GBP", D("680.68")),
            Leg(House(HouseAccount.provider("binance")), "BTC", D("-0.01")),
            Leg(btc, "BTC", D("0.01")),
        ],
    )


async def test_customer_account_is_created_once(engine: AsyncEngine, ledger: Ledger) -> None:
    user = await create_user(engine)
    first, second = await asyncio.gather(
        ledger.customer_account(user, "GBP"), ledger.customer_account(user, "GBP")
    )
    assert first == second
    with pytest.raises(CurrencyMismatch):
        await ledger.customer_account(user, "DOGE")


async def test_deposit_then_balances(ledger: Ledger, new_account: NewAccount) -> None:
    acc = await new_account("GBP", D("100.50"))
    b = await ledger.balance(acc)
    assert (b.balance, b.available, b.reserved) == (D("100.50"), D("100.50"), D(0))


async def test_reserve_commit_partial_releases_the_rest(ledger: Ledger, new_account: NewAccount) -> None:
    gbp = await new_account("GBP", D("1000"))
    btc = await ledger.customer_account((await _owner(ledger, gbp)), "BTC")
    order = uuid.uuid4()
    hold = await ledger.reserve(gbp, "GBP", D("700"), reference_type="ORDER", reference_id=order)
    b = await ledger.balance(gbp)
    assert (b.balance, b.available, b.reserved) == (D("1000"), D("300"), D("700"))

    result = await ledger.commit(hold.hold_id, trade_settlement(order, hold.hold_id, gbp, btc))
    assert not result.replayed
    b = await ledger.balance(gbp)
    assert (b.balance, b.available, b.reserved) == (D("318.98"), D("318.98"), D(0))
    assert (await ledger.balance(btc)).balance == D("0.01")
    [h] = await ledger.holds_for("ORDER", order)
    assert h.status == "committed" and h.consumed == D("681.02")

    # A committed hold never commits again, nor releases.
    again = trade_settlement(order, hold.hold_id, gbp, btc)
    other_step = Posting(**{**again.__dict__, "step": "settle-2"})
    with pytest.raises(HoldNotActive):
        await ledger.post(other_step)
    with pytest.raises(HoldNotActive):
        await ledger.release(hold.hold_id)


async def _owner(ledger: Ledger, account: uuid.UUID) -> uuid.UUID:
    async with ledger._engine.connect() as c:  # test helper: who owns the account
        return (
            await c.execute(text("SELECT user_id FROM accounts WHERE id = :a"), {"a": account})
        ).scalar_one()


async def test_release_returns_funds_and_a_released_hold_never_commits(
    ledger: Ledger, new_account: NewAccount
) -> None:
    gbp = await new_account("GBP", D("50"))
    btc = await ledger.customer_account(await _owner(ledger, gbp), "BTC")
    order = uuid.uuid4()
    hold = await ledger.reserve(gbp, "GBP", D("40"), reference_type="ORDER", reference_id=order)
    assert await ledger.release(hold.hold_id) is True
    assert await ledger.release(hold.hold_id) is False  # idempotent
    b = await ledger.balance(gbp)
    assert (b.available, b.reserved) == (D("50"), D(0))
    posting = Posting(
        reference_type="ORDER",
        reference_id=order,
        step="settle",
        legs=[Leg(gbp, "GBP", D("-10"), hold_id=hold.hold_id), Leg(btc, "GBP", D("10"))],
    )
    with pytest.raises((HoldNotActive, CurrencyMismatch)):
        await ledger.post(posting)
    ok_shape = Posting(
        reference_type="ORDER",
        reference_id=order,
        step="settle",
        legs=[
            Leg(gbp, "GBP", D("-10"), hold_id=hold.hold_id),
            Leg(House(HouseAccount.SUSPENSE), "GBP", D("10")),
        ],
    )
    with pytest.raises(HoldNotActive):
        await ledger.post(ok_shape)
    assert (await ledger.balance(gbp)).balance == D("50")


async def test_partial_consumption_keeps_hold_open(ledger: Ledger, new_account: NewAccount) -> None:
    gbp = await new_account("GBP", D("100"))
    order = uuid.uuid4()
    hold = await ledger.reserve(gbp, "GBP", D("60"), reference_type="ORDER", reference_id=order)
    for i, part in enumerate([D("20"), D("25")]):
        await ledger.post(
            Posting(
                reference_type="ORDER",
                reference_id=order,
                step=f"fill-{i}",
                close_holds=False,
                legs=[
                    Leg(gbp, "GBP", -part, hold_id=hold.hold_id),
                    Leg(House(HouseAccount.SUSPENSE), "GBP", part),
                ],
            )
        )
    b = await ledger.balance(gbp)
    assert (b.balance, b.available, b.reserved) == (D("55"), D("40"), D("15"))
    with pytest.raises(InsufficientFunds):  # more than the hold has left
        await ledger.post(
            Posting(
                reference_type="ORDER",
                reference_id=order,
                step="fill-too-much",
                legs=[
                    Leg(gbp, "GBP", D("-16"), hold_id=hold.hold_id),
                    Leg(House(HouseAccount.SUSPENSE), "GBP", D("16")),
                ],
            )
        )
    assert await ledger.release(hold.hold_id)
    b = await ledger.balance(gbp)
    assert (b.balance, b.available, b.reserved) == (D("55"), D("55"), D(0))


async def test_idempotent_replay_returns_first_result(ledger: Ledger, new_account: NewAccount) -> None:
    a = await new_account("GBP", D("10"))
    b = await new_account("GBP")
    posting = Posting(
        reference_type="TRANSFER",
        reference_id=uuid.uuid4(),
        step="move",
        legs=[Leg(a, "GBP", D("-3")), Leg(b, "GBP", D("3"))],
    )
    first = await ledger.post(posting)
    second = await ledger.post(posting)
    assert second.replayed and second.transaction_id == first.transaction_id
    assert (await ledger.balance(b)).balance == D("3")

    changed = Posting(**{**posting.__dict__, "legs": [Leg(a, "GBP", D("-4")), Leg(b, "GBP", D("4"))]})
    with pytest.raises(IdempotencyConflict):
        await ledger.post(changed)


async def test_replay_with_house_legs_is_recognised_despite_random_shards(
    ledger: Ledger, new_account: NewAccount
) -> None:
    a = await new_account("GBP", D("10"))
    posting = Posting(
        reference_type="FEE",
        reference_id=uuid.uuid4(),
        step="charge",
        legs=[Leg(a, "GBP", D("-1")), Leg(House(HouseAccount.FEE_REVENUE), "GBP", D("1"))],
    )
    results = [await ledger.post(posting) for _ in range(5)]
    assert [r.replayed for r in results] == [False, True, True, True, True]
    assert (await ledger.balance(a)).balance == D("9")


async def test_concurrent_duplicates_take_effect_once(ledger: Ledger, new_account: NewAccount) -> None:
    a = await new_account("GBP", D("100"))
    b = await new_account("GBP")
    posting = Posting(
        reference_type="TRANSFER",
        reference_id=uuid.uuid4(),
        step="move",
        legs=[Leg(a, "GBP", D("-7")), Leg(b, "GBP", D("7"))],
    )
    results = await asyncio.gather(*(ledger.post(posting) for _ in range(8)))
    assert sum(not r.replayed for r in results) == 1
    assert len({r.transaction_id for r in results}) == 1
    assert (await ledger.balance(b)).balance == D("7")

    order = uuid.uuid4()
    holds = await asyncio.gather(
        *(ledger.reserve(a, "GBP", D("5"), reference_type="ORDER", reference_id=order) for _ in range(8))
    )
    assert len({h.hold_id for h in holds}) == 1 and sum(not h.replayed for h in holds) == 1
    assert (await ledger.balance(a)).reserved == D("5")


async def test_concurrent_reservations_never_overspend(ledger: Ledger, new_account: NewAccount) -> None:
    a = await new_account("GBP", D("100"))

    async def try_hold() -> bool:
        try:
            await ledger.reserve(a, "GBP", D("30"), reference_type="ORDER", reference_id=uuid.uuid4())
            return True
        except InsufficientFunds:
            return False

    outcomes = await asyncio.gather(*(try_hold() for _ in range(10)))
    assert sum(outcomes) == 3
    b = await ledger.balance(a)
    assert (b.available, b.reserved) == (D("10"), D("90"))


@pytest.mark.parametrize(
    ("legs_factory", "error"),
    [
        (lambda a, b: [Leg(a, "GBP", D("-5")), Leg(b, "GBP", D("4"))], UnbalancedPosting),
        (lambda a, b: [Leg(a, "GBP", D("-5"))], UnbalancedPosting),
        (lambda a, b: [Leg(a, "GBP", D("0")), Leg(b, "GBP", D("0"))], InvalidAmount),
        (lambda a, b: [Leg(a, "GBP", D("-0.001")), Leg(b, "GBP", D("0.001"))], InvalidAmount),
        (lambda a, b: [Leg(a, "XYZ", D("-1")), Leg(b, "XYZ", D("1"))], CurrencyMismatch),
        (lambda a, b: [Leg(a, "BTC", D("-1")), Leg(b, "BTC", D("1"))], CurrencyMismatch),
        (lambda a, b: [Leg(a, "GBP", D("-500")), Leg(b, "GBP", D("500"))], InsufficientFunds),
        (lambda a, b: [Leg(uuid.uuid4(), "GBP", D("-1")), Leg(b, "GBP", D("1"))], UnknownAccount),
    ],
)
async def test_bad_postings_raise_typed_errors_and_write_nothing(
    ledger: Ledger,
    new_account: NewAccount,
    engine: AsyncEngine,
    legs_factory: Callable[..., list[Leg]],
    error: type[Exception],
) -> None:
    a = await new_account("GBP", D("10"))
    b = await new_account("GBP")
    ref = uuid.uuid4()
    with pytest.raises(error):
        await ledger.post(
            Posting(reference_type="TRANSFER", reference_id=ref, step="x", legs=legs_factory(a, b))
        )
    async with engine.connect() as c:
        written = (
            await c.execute(
                text("SELECT count(*) FROM ledger_transactions WHERE reference_id = :r"), {"r": ref}
            )
        ).scalar_one()
    assert written == 0
    assert (await ledger.balance(a)).balance == D("10")
    assert (await ledger.balance(b)).balance == D("0")


async def test_bad_reservations(ledger: Ledger, new_account: NewAccount) -> None:
    a = await new_account("GBP", D("10"))
    with pytest.raises(InsufficientFunds):
        await ledger.reserve(a, "GBP", D("10.01"), reference_type="ORDER", reference_id=uuid.uuid4())
    with pytest.raises(InvalidAmount):
        await ledger.reserve(a, "GBP", D("0"), reference_type="ORDER", reference_id=uuid.uuid4())
    with pytest.raises(InvalidAmount):
        await ledger.reserve(a, "GBP", D("-1"), reference_type="ORDER", reference_id=uuid.uuid4())
    with pytest.raises(InvalidAmount):
        await ledger.reserve(a, "GBP", D("1.001"), reference_type="ORDER", reference_id=uuid.uuid4())
    with pytest.raises(CurrencyMismatch):
        await ledger.reserve(a, "BTC", D("1"), reference_type="ORDER", reference_id=uuid.uuid4())
    with pytest.raises(UnknownAccount):
        await ledger.reserve(uuid.uuid4(), "GBP", D("1"), reference_type="ORDER", reference_id=uuid.uuid4())
    with pytest.raises(UnknownAccount):
        await ledger.release(uuid.uuid4())
    order = uuid.uuid4()
    await ledger.reserve(a, "GBP", D("1"), reference_type="ORDER", reference_id=order)
    with pytest.raises(IdempotencyConflict):
        await ledger.reserve(a, "GBP", D("2"), reference_type="ORDER", reference_id=order)
    assert (await ledger.balance(a)).reserved == D("1")


async def test_database_refuses_an_unbalanced_journal_even_without_the_code(
    ledger: Ledger, new_account: NewAccount, engine: AsyncEngine
) -> None:
    a = await new_account("GBP", D("10"))
    tx = uuid.uuid4()
    with pytest.raises(Exception) as info:
        async with engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO ledger_transactions (id, idempotency_key, request_hash, kind, "
                    "reference_type, "
                    "reference_id) VALUES (:tx, :k, 'h', 'x', 'RAW', :tx)"
                ),
                {"tx": tx, "k": f"raw:{tx}"},
            )
            await c.execute(
                text(
                    "INSERT INTO ledger_entries (id, transaction_id, account_id, seq, currency, amount, "
                    "balance_after, reference_type, reference_id, hash) "
                    "VALUES (gen_random_uuid(), :tx, :a, 999, 'GBP', 5, 15, 'RAW', :tx, 'h')"
                ),
                {"tx": tx, "a": a},
            )
    assert isinstance(info.value.__cause__ or info.value, Exception)
    assert "do not sum to zero" in str(info.value)


async def test_entries_pagination_and_totals(ledger: Ledger, new_account: NewAccount) -> None:
    a = await new_account("GBP", D("100"))
    b = await new_account("GBP")
    for i in range(7):
        await ledger.post(
            Posting(
                reference_type="TRANSFER",
                reference_id=uuid.uuid4(),
                step=str(i),
                legs=[Leg(a, "GBP", D("-1")), Leg(b, "GBP", D("1"))],
            )
        )
    seen = []
    cursor = None
    while True:
        page = await ledger.entries([a], limit=3, cursor=cursor)
        seen += page.entries
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [e.seq for e in seen] == list(range(8, 0, -1))
    assert seen[0].balance_after == D("93")
    with pytest.raises(InvalidCursor):
        await ledger.entries([a], cursor="not-a-cursor")

    totals = {t.currency: t for t in await ledger.totals()}
    assert all(t.total == 0 for t in totals.values())
    assert totals["GBP"].customer > 0 and totals["GBP"].house < 0


async def test_entries_are_immutable_in_the_database(
    ledger: Ledger, new_account: NewAccount, database_url: str
) -> None:
    a = await new_account("GBP", D("10"))
    [entry] = (await ledger.entries([a])).entries
    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE ledger_entries SET amount = 11 WHERE id = %s", (entry.id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM ledger_entries WHERE id = %s", (entry.id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE ledger_transactions SET kind = 'x' WHERE id = %s", (entry.transaction_id,))


async def test_verify_while_postings_land_reports_no_false_problem(
    ledger: Ledger, new_account: NewAccount
) -> None:
    """`verify` reads one snapshot: postings committed while it walks the accounts are either wholly
    in what it sees or wholly out of it, never an account row from before beside entries from after."""
    accounts = [await new_account("GBP", D("1")) for _ in range(4)]
    stop = asyncio.Event()

    async def keep_posting() -> None:
        n = 0
        while not stop.is_set():
            for acc in accounts:
                await ledger.post(
                    Posting(
                        reference_type="DEPOSIT",
                        reference_id=uuid.uuid4(),
                        step="credit",
                        kind="deposit",
                        legs=[
                            Leg(acc, "GBP", D("0.01")),
                            Leg(House(HouseAccount.BANK_CASH), "GBP", D("-0.01")),
                        ],
                    )
                )
                n += 1

    writer = asyncio.create_task(keep_posting())
    try:
        reports = [await ledger.verify() for _ in range(3)]
    finally:
        stop.set()
        await writer
    assert all(r.ok for r in reports), [r.first_problem for r in reports if not r.ok]

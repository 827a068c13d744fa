"""Group commit and the set-based posting function: batching must never change what a caller sees.

Concurrent standalone postings share database transactions (`ledger_post_batch`); each caller still
gets its own result or its own typed error, a failing posting takes nothing else down with it, and
batches that touch the same rows never deadlock. The posting function itself is driven directly
here too, without the Python checks in front of it, so its own refusals are tested.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from decimal import Decimal

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import House, HouseAccount, InsufficientFunds, Ledger, Leg, Posting
from tests.ledger.conftest import NewCustomer

D = Decimal


def transfer(src: uuid.UUID, dst: uuid.UUID, amount: Decimal, ref: uuid.UUID | None = None) -> Posting:
    return Posting(
        reference_type="TRANSFER",
        reference_id=ref or uuid.uuid4(),
        step="move",
        legs=[Leg(src, "GBP", -amount), Leg(dst, "GBP", amount)],
    )


async def _transactions_of(engine: AsyncEngine, refs: list[uuid.UUID]) -> list[tuple[str, str]]:
    """(idempotency key, xmin) of the journal transactions of these references."""
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT idempotency_key, xmin::text FROM ledger_transactions WHERE reference_id = ANY(:r)"),
            {"r": refs},
        )
        return [(r[0], r[1]) for r in rows]


async def test_concurrent_postings_share_a_commit_and_each_gets_its_own_result(
    ledger: Ledger, new_account: NewCustomer, engine: AsyncEngine
) -> None:
    sources = [await new_account("GBP", D("50")) for _ in range(12)]
    sink = await new_account("GBP")
    postings = [transfer(s, sink, D(i + 1)) for i, s in enumerate(sources)]

    results = await asyncio.gather(*(ledger.post(p) for p in postings))

    assert len({r.transaction_id for r in results}) == 12 and not any(r.replayed for r in results)
    written = await _transactions_of(engine, [p.reference_id for p in postings])
    assert len(written) == 12
    assert len({xmin for _, xmin in written}) < 12  # batched: fewer database transactions than postings
    for i, s in enumerate(sources):
        assert (await ledger.balance(s)).balance == D(50) - D(i + 1)
    assert (await ledger.balance(sink)).balance == sum(D(i + 1) for i in range(12))
    assert (await ledger.verify()).ok


async def test_a_failing_posting_fails_alone_and_the_rest_of_its_batch_lands(
    ledger: Ledger, new_account: NewCustomer, engine: AsyncEngine
) -> None:
    rich = [await new_account("GBP", D("20")) for _ in range(6)]
    poor = await new_account("GBP", D("1"))
    sink = await new_account("GBP")
    good = [transfer(a, sink, D("5")) for a in rich]
    bad = transfer(poor, sink, D("2"))
    replay = good[0]  # the same key twice in one batch: applied once, the second is a replay

    outcomes = await asyncio.gather(
        *(ledger.post(p) for p in [*good[:3], bad, *good[3:], replay]), return_exceptions=True
    )

    assert isinstance(outcomes[3], InsufficientFunds)
    landed = [o for i, o in enumerate(outcomes) if i != 3]
    assert not any(isinstance(o, BaseException) for o in landed)
    assert outcomes[-1].transaction_id == outcomes[0].transaction_id  # type: ignore[union-attr]
    assert [o.replayed for o in landed].count(True) == 1  # type: ignore[union-attr]
    assert await _transactions_of(engine, [bad.reference_id]) == []
    assert (await ledger.balance(poor)).balance == D("1")
    assert (await ledger.balance(sink)).balance == D("30")


async def test_cancelled_caller_before_the_flush_posts_nothing(
    ledger: Ledger, new_account: NewCustomer
) -> None:
    a = await new_account("GBP", D("10"))
    b = await new_account("GBP")
    # Both flushers are started by the first two postings; the third is queued behind them. All
    # three are queued before any flusher runs, and the third caller gives up before that.
    busy = [asyncio.create_task(ledger.post(transfer(a, b, D("1")))) for _ in range(2)]
    waiting = asyncio.create_task(ledger.post(transfer(a, b, D("5"))))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()
    await asyncio.gather(*busy)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (await ledger.balance(b)).balance == D("2")
    assert (await ledger.verify()).ok


async def test_batches_over_the_same_rows_never_deadlock(
    ledger: Ledger, new_account: NewCustomer, database_url: str
) -> None:
    """Four sessions send batches moving money around the same six accounts and the house fee
    account, in random directions: the up-front lock order must keep every batch deadlock-free."""
    accounts = [await new_account("GBP", D("1000")) for _ in range(6)]
    await ledger.house_shards(HouseAccount.FEE_REVENUE, "GBP")
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    rng = random.Random(7)

    def batch() -> str:
        postings = []
        for _ in range(6):
            src, dst = rng.sample(accounts, 2)
            postings.append(
                {
                    "tx": str(uuid.uuid4()),
                    "key": f"TEST:{uuid.uuid4()}:move",
                    "hash": "h",
                    "kind": "transfer",
                    "rt": "TEST",
                    "rid": str(uuid.uuid4()),
                    "legs": [
                        {"account_id": str(src), "currency": "GBP", "amount": "-1.01"},
                        {"account_id": str(dst), "currency": "GBP", "amount": "1"},
                        {"house": HouseAccount.FEE_REVENUE, "shards": 4, "currency": "GBP", "amount": "0.01"},
                    ],
                }
            )
        return json.dumps(postings)

    async def session() -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            for _ in range(15):
                rows = await (
                    await conn.execute("SELECT * FROM ledger_post_batch(%s::jsonb)", (batch(),))
                ).fetchall()
                assert [r[0] for r in rows] == list(range(6))
        return 15

    assert sum(await asyncio.gather(*(session() for _ in range(4)))) == 60
    total = sum([(await ledger.balance(a)).balance for a in accounts], D(0))
    assert total == D("6000") - D("0.01") * 360
    assert (await ledger.verify()).ok


async def test_two_legs_on_one_account_and_a_hold_split_over_two_legs(
    ledger: Ledger, new_account: NewCustomer, engine: AsyncEngine
) -> None:
    a = await new_account("GBP", D("100"))
    b = await new_account("GBP")
    hold = await ledger.reserve(a, "GBP", D("40"), reference_type="ORDER", reference_id=uuid.uuid4())
    ref = uuid.uuid4()
    await ledger.post(
        Posting(
            reference_type="ORDER",
            reference_id=ref,
            step="settle",
            legs=[
                Leg(a, "GBP", D("-10"), hold_id=hold.hold_id),
                Leg(a, "GBP", D("-15"), hold_id=hold.hold_id),
                Leg(a, "GBP", D("-5")),
                Leg(b, "GBP", D("29")),
                Leg(House(HouseAccount.FEE_REVENUE), "GBP", D("1")),
            ],
        )
    )
    bal = await ledger.balance(a)
    # 30 paid (25 from the hold), the hold's unused 15 back to available; nothing left reserved.
    assert (bal.balance, bal.available, bal.reserved) == (D("70"), D("70"), D("0"))
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT seq, amount, balance_after FROM ledger_entries "
                    "WHERE reference_id = :r AND account_id = :a ORDER BY seq"
                ),
                {"r": ref, "a": a},
            )
        ).all()
        status = (
            await c.execute(text("SELECT status, consumed FROM holds WHERE id = :h"), {"h": hold.hold_id})
        ).one()
    assert [(r[1], r[2]) for r in rows] == [(D("-10"), D("90")), (D("-15"), D("75")), (D("-5"), D("70"))]
    assert [r[0] for r in rows] == [rows[0][0], rows[0][0] + 1, rows[0][0] + 2]
    assert (status[0], status[1]) == ("committed", D("25"))
    assert (await ledger.verify()).ok


@pytest.mark.parametrize(
    ("legs", "sqlstate"),
    [
        ([("a", "GBP", "0"), ("b", "GBP", "0")], "LG008"),
        ([("a", "GBP", "-0.001"), ("b", "GBP", "0.001")], "LG007"),
        ([("a", "XYZ", "-1"), ("b", "XYZ", "1")], "LG006"),
        ([("a", "BTC", "-1"), ("b", "BTC", "1")], "LG006"),
        ([("a", "GBP", "-1"), ("b", "GBP", "2")], "LG004"),
        ([("a", "GBP", "-1")], "LG004"),
        ([("a", "GBP", "-11"), ("b", "GBP", "11")], "LG001"),
        ([("a", "GBP", "-1"), ("nobody", "GBP", "1")], "LG005"),
        ([("a", "GBP", "-1"), ("house:no_such_account", "GBP", "1")], "LG005"),
    ],
)
async def test_the_posting_function_refuses_bad_legs_by_itself(
    new_account: NewCustomer, database_url: str, legs: list[tuple[str, str, str]], sqlstate: str
) -> None:
    """Straight to `ledger_post`, past the Python checks: the database is the last line."""
    named = {
        "a": str(await new_account("GBP", D("10"))),
        "b": str(await new_account("GBP")),
        "nobody": str(uuid.uuid4()),
    }
    body = []
    for who, currency, amount in legs:
        target = (
            {"house": who.split(":", 1)[1], "shards": 4}
            if who.startswith("house:")
            else {"account_id": named[who]}
        )
        body.append({**target, "currency": currency, "amount": amount})
    ref = uuid.uuid4()
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as info:
            await conn.execute(
                "SELECT * FROM ledger_post(gen_random_uuid(), %s, 'h', 'transfer', 'TEST', %s, NULL, "
                "'{}'::jsonb, %s::jsonb, true)",
                (f"TEST:{ref}:x", ref, json.dumps(body)),
            )
        assert info.value.sqlstate == sqlstate
        written = await (
            await conn.execute("SELECT count(*) FROM ledger_transactions WHERE reference_id = %s", (ref,))
        ).fetchone()
        assert written == (0,)


async def test_a_batch_applies_its_postings_in_order_on_a_shared_account(
    ledger: Ledger, new_account: NewCustomer, database_url: str
) -> None:
    """Posting 1 commits a hold (its unused part back to available); posting 2, in the same batch,
    spends that available money: the batch must see what posting one by one would have seen."""
    a = await new_account("GBP", D("100"))
    b = await new_account("GBP")
    hold = await ledger.reserve(a, "GBP", D("60"), reference_type="ORDER", reference_id=uuid.uuid4())

    def posting(legs: list[dict[str, str]]) -> dict[str, object]:
        return {"tx": str(uuid.uuid4()), "key": f"TEST:{uuid.uuid4()}:x", "hash": "h", "kind": "transfer",
                "rt": "TEST", "rid": str(uuid.uuid4()), "legs": legs}  # fmt: skip

    batch = [
        posting(
            [
                {"account_id": str(a), "currency": "GBP", "amount": "-10", "hold_id": str(hold.hold_id)},
                {"account_id": str(b), "currency": "GBP", "amount": "10"},
            ]
        ),
        posting(
            [
                {"account_id": str(a), "currency": "GBP", "amount": "-80"},
                {"account_id": str(b), "currency": "GBP", "amount": "80"},
            ]
        ),
    ]
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        rows = await (
            await conn.execute("SELECT * FROM ledger_post_batch(%s::jsonb)", (json.dumps(batch),))
        ).fetchall()
    assert [(r[0], r[2]) for r in rows] == [(0, False), (1, False)]
    bal = await ledger.balance(a)
    assert (bal.balance, bal.available, bal.reserved) == (D("10"), D("10"), D("0"))
    assert (await ledger.balance(b)).balance == D("90")
    assert (await ledger.verify()).ok


async def test_a_batch_whose_connection_is_killed_is_sent_again_and_lands_once(
    ledger: Ledger, new_account: NewCustomer, engine: AsyncEngine, database_url: str
) -> None:
    """The database session dies while a batch waits for a lock: its postings go out again on a
    fresh connection, and every caller gets its result, each posted exactly once."""
    sources = [await new_account("GBP", D("10")) for _ in range(6)]
    sink = await new_account("GBP")
    postings = [transfer(s, sink, D("4")) for s in sources]
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(dsn) as blocker:
        await blocker.execute("SELECT 1 FROM accounts WHERE id = %s FOR UPDATE", (sink,))
        calls = [asyncio.create_task(ledger.post(p)) for p in postings]
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as admin:
            victims: list[tuple[int]] = []
            for _ in range(200):  # until the batches are waiting on the locked row
                cursor = await admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%%ledger_post%%' AND pid <> pg_backend_pid()"
                )
                victims = await cursor.fetchall()
                if victims:
                    break
                await asyncio.sleep(0.02)
            assert victims
            for (pid,) in victims:
                await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await asyncio.sleep(0.1)
        await blocker.rollback()
    results = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)

    assert len({r.transaction_id for r in results}) == 6
    written = await _transactions_of(engine, [p.reference_id for p in postings])
    assert len(written) == 6
    assert (await ledger.balance(sink)).balance == D("24")
    for s in sources:
        assert (await ledger.balance(s)).balance == D("6")
    assert (await ledger.verify()).ok

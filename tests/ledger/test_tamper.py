"""`verify()` finds an altered entry and a missing one, in a database of its own (tampering needs
superuser powers that switch the append-only trigger off, which the shared database must not see)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import psycopg
import pytest_asyncio

from devstack import migrate
from devstack.postgres import EmbeddedPostgres
from models.database import async_engine
from services.ledger import House, HouseAccount, Ledger, Leg, Posting


@pytest_asyncio.fixture
async def scratch(postgres: EmbeddedPostgres) -> AsyncIterator[tuple[Ledger, str]]:
    url = postgres.create_database(f"tamper_{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    engine = async_engine(url)
    try:
        yield Ledger(engine, house_shards=2), url
    finally:
        await engine.dispose()


async def _activity(ledger: Ledger, url: str) -> uuid.UUID:
    uid = uuid.uuid4()
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
        c.execute("INSERT INTO users (id, email, password_hash) VALUES (%s, %s, 'x')", (uid, f"{uid}@t.test"))
    acc = await ledger.customer_account(uid, "GBP")
    for i in range(5):
        await ledger.post(
            Posting(
                reference_type="T",
                reference_id=uuid.uuid4(),
                step=str(i),
                legs=[
                    Leg(House(HouseAccount.BANK_CASH), "GBP", Decimal("-10")),
                    Leg(acc, "GBP", Decimal("10")),
                ],
            )
        )
    return acc


def _tamper(url: str, sql: str, *args: object) -> None:
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
        c.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        c.execute(sql, args)
        c.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")


async def test_verify_passes_on_honest_books(scratch: tuple[Ledger, str]) -> None:
    ledger, url = scratch
    await _activity(ledger, url)
    report = await ledger.verify()
    assert report.ok and report.entries_checked == 10


async def test_verify_reports_the_altered_entry(scratch: tuple[Ledger, str]) -> None:
    ledger, url = scratch
    acc = await _activity(ledger, url)
    _tamper(url, "UPDATE ledger_entries SET reference_type = 'X' WHERE account_id = %s AND seq = 3", acc)
    report = await ledger.verify()
    assert not report.ok and report.first_problem is not None
    assert report.first_problem.account_id == acc and report.first_problem.seq == 3
    assert "hash" in report.first_problem.reason


async def test_verify_reports_an_amount_changed_with_its_balance(scratch: tuple[Ledger, str]) -> None:
    ledger, url = scratch
    acc = await _activity(ledger, url)
    _tamper(
        url,
        "UPDATE ledger_entries SET amount = 1000, balance_after = balance_after + 990 "
        "WHERE account_id = %s AND seq = 5",
        acc,
    )
    report = await ledger.verify()
    assert not report.ok and report.first_problem is not None
    assert report.first_problem.account_id == acc and report.first_problem.seq == 5


async def test_verify_reports_the_missing_entry(scratch: tuple[Ledger, str]) -> None:
    ledger, url = scratch
    acc = await _activity(ledger, url)
    _tamper(url, "DELETE FROM ledger_entries WHERE account_id = %s AND seq = 2", acc)
    report = await ledger.verify()
    assert not report.ok and report.first_problem is not None
    assert report.first_problem.account_id == acc and report.first_problem.seq == 2
    assert "missing" in report.first_problem.reason

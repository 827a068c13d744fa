"""The customer view's data (`services.customer_view`) on the session's real PostgreSQL and ledger: search by
email, name or id; every section from the service that owns it; the ledger trail's chain check, which
passes on honest books and names the altered entry when one was tampered with (in a database of its own:
tampering needs the append-only trigger off)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import psycopg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from devstack import migrate
from devstack.postgres import EmbeddedPostgres
from models.database import async_engine
from services import customer_view
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(engine: AsyncEngine, settings: Settings) -> Ledger:
    return Ledger(engine, house_shards=settings.house_account_shards)


async def _customer(engine: AsyncEngine, *, first: str = "Ada", last: str = "Lovelace") -> uuid.UUID:
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, first_name, last_name, kyc_tier, "
                "email_verified) VALUES (:id, :e, 'x', :f, :l, 2, true)"
            ),
            {"id": user_id, "e": f"cv-{user_id.hex[:12]}@example.com", "f": first, "l": last},
        )
    return user_id


async def _pay_in(ledger: Ledger, user_id: uuid.UUID, currency: str, amount: str) -> None:
    account = await ledger.customer_account(user_id, currency)
    await ledger.post(
        Posting(
            reference_type="deposit", reference_id=uuid.uuid4(), step="credit", kind="deposit",
            legs=[
                Leg(House(HouseAccount.BANK_CASH), currency, -Decimal(amount)),
                Leg(account, currency, Decimal(amount)),
            ],
        )
    )  # fmt: skip


async def test_search_finds_a_customer_by_email_fragment_name_or_id(engine: AsyncEngine) -> None:
    user_id = await _customer(engine, first="Grace", last=f"Hopper{uuid.uuid4().hex[:6]}")
    email = f"cv-{user_id.hex[:12]}@example.com"
    assert [h.id for h in await customer_view.search(engine, email[:15].upper())] == [user_id]
    assert [h.id for h in await customer_view.search(engine, str(user_id))][0] == user_id
    last = (await customer_view.search(engine, str(user_id)))[0].last_name
    assert last is not None and user_id in {h.id for h in await customer_view.search(engine, f"grace {last}")}
    assert await customer_view.search(engine, "%_%") == []  # wildcards are literal characters here
    assert await customer_view.search(engine, "  ") == []


async def test_the_view_shows_every_section_with_balances_and_a_verified_ledger_trail(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    user_id = await _customer(engine)
    await _pay_in(ledger, user_id, "GBP", "250.00")
    await _pay_in(ledger, user_id, "BTC", "0.01500000")
    order_id, deposit_id, withdrawal_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    record = {
        "symbol": "BTC-GBP", "side": "buy", "max_slippage": "0.01", "reason": "kraken: EOrder:Rate limit",
        "quotes": [],
    }  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (id, user_id, symbol, side, type, amount, status, execution_record) "
                "VALUES (:id, :u, 'BTC-GBP', 'BUY', 'MARKET', 0.015, 'FILLED', CAST(:r AS jsonb))"
            ),
            {"id": order_id, "u": user_id, "r": json.dumps(record)},
        )
        await conn.execute(
            text(
                "INSERT INTO deposits (id, user_id, currency, amount, status) "
                "VALUES (:id, :u, 'GBP', 250, 'CONFIRMED')"
            ),
            {"id": deposit_id, "u": user_id},
        )
        await conn.execute(
            text(
                "INSERT INTO withdrawals (id, user_id, currency, amount, status) "
                "VALUES (:id, :u, 'GBP', 20, 'PENDING')"
            ),
            {"id": withdrawal_id, "u": user_id},
        )
        await conn.execute(
            text(
                "INSERT INTO known_devices (user_id, fingerprint, user_agent) "
                "VALUES (:u, 'fp-1', 'Firefox/130')"
            ),
            {"u": user_id},
        )
        await conn.execute(
            text(
                "INSERT INTO audit_log (id, actor_id, actor_type, action, target_type, target_id, details) "
                "VALUES "
                "(:a, :u, 'user', 'auth.login', 'user', :uid, '{}'), "
                "(:b, NULL, 'system', 'aml.alert.raised', 'user', :uid, '{}')"
            ),
            {"a": uuid.uuid4(), "b": uuid.uuid4(), "u": user_id, "uid": str(user_id)},
        )

    shown = await customer_view.view(engine, ledger, user_id)
    assert shown.profile.id == user_id and shown.profile.kyc_tier == 2
    balances = {b.currency: b.balance for b in shown.balances}
    assert balances["GBP"] == "250.00" and balances["BTC"] == "0.01500000" and balances["ETH"] == "0.00000000"
    assert {(e.currency, e.amount) for e in shown.ledger.entries} == {
        ("GBP", "250.00"),
        ("BTC", "0.01500000"),
    }
    assert shown.ledger.chain.ok and shown.ledger.chain.accounts_checked == 2
    assert shown.ledger.chain.entries_checked == 2
    assert [o.order.id for o in shown.orders] == [order_id]
    assert (
        shown.orders[0].execution is not None and "EOrder" in shown.orders[0].execution.reason
    )  # staff see it
    assert [d.id for d in shown.deposits] == [deposit_id]
    assert [w.id for w in shown.withdrawals] == [withdrawal_id]
    assert shown.withdrawals[0].workflow_id == f"withdrawal-{withdrawal_id}"
    assert [d.fingerprint for d in shown.devices] == ["fp-1"]
    assert set(shown.limits) == {"trading", "withdrawal"}
    assert [a.action for a in shown.audit] == ["auth.login"], "AML material stays out of the support view"
    with_compliance = await customer_view.view(engine, ledger, user_id, include_compliance=True)
    assert {a.action for a in with_compliance.audit} == {"auth.login", "aml.alert.raised"}


async def test_the_ledger_trail_pages_back_and_its_check_covers_every_entry(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    user_id = await _customer(engine)
    for _ in range(customer_view.SECTION_ROWS + 1):
        await _pay_in(ledger, user_id, "GBP", "1.00")
    first = await customer_view.ledger_trail(engine, ledger, user_id)
    assert len(first.entries) == customer_view.SECTION_ROWS and first.next_cursor is not None
    assert first.chain.ok and first.chain.entries_checked == customer_view.SECTION_ROWS + 1
    older = await customer_view.ledger_trail(engine, ledger, user_id, cursor=first.next_cursor)
    assert [e.balance_after for e in older.entries] == ["1.00"] and older.next_cursor is None


async def test_an_unknown_customer_is_a_404(engine: AsyncEngine, ledger: Ledger) -> None:
    with pytest.raises(customer_view.CustomerNotFound):
        await customer_view.view(engine, ledger, uuid.uuid4())


@pytest_asyncio.fixture(loop_scope="session")
async def scratch(postgres: EmbeddedPostgres) -> AsyncIterator[tuple[AsyncEngine, str]]:
    url = postgres.create_database(f"cv_tamper_{uuid.uuid4().hex[:8]}")
    migrate.upgrade(url)
    engine = async_engine(url)
    try:
        yield engine, url
    finally:
        await engine.dispose()


async def test_the_chain_check_names_an_entry_altered_behind_the_ledgers_back(
    scratch: tuple[AsyncEngine, str],
) -> None:
    engine, url = scratch
    ledger = Ledger(engine, house_shards=2)
    user_id = await _customer(engine)
    for _ in range(3):
        await _pay_in(ledger, user_id, "GBP", "10.00")
    assert (await customer_view.ledger_trail(engine, ledger, user_id)).chain.ok
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as c:
        c.execute("ALTER TABLE ledger_entries DISABLE TRIGGER USER")
        c.execute(
            "UPDATE ledger_entries SET amount = 1000, balance_after = balance_after + 990 "
            "WHERE seq = 2 AND account_id = (SELECT id FROM accounts WHERE user_id = %s)",
            (user_id,),
        )
        c.execute("ALTER TABLE ledger_entries ENABLE TRIGGER USER")
    chain = (await customer_view.ledger_trail(engine, ledger, user_id)).chain
    assert not chain.ok and chain.problem is not None and "seq 2" in chain.problem


# --- in the browser -----------------------------------------------------------------------------------


async def test_in_the_console_the_customer_view_shows_balances_and_a_verified_ledger_trail(
    stack: Stack, console: Console, ledger: Ledger
) -> None:
    user_id = await _customer(stack.engine, first="Mary", last="Somerville")
    await _pay_in(ledger, user_id, "GBP", "250.00")
    await _pay_in(ledger, user_id, "ETH", "1.25000000")
    support = await make_staff(stack, ["support"])

    page = await console.login(support)
    await page.click("nav >> text=Customers")
    await page.fill("#q", f"cv-{user_id.hex[:12]}")
    await page.click("#search")
    hit = page.locator("#hits a", has_text=f"cv-{user_id.hex[:12]}")
    await hit.wait_for()
    await console.shot(page, "customer-search")
    await hit.click()
    await page.wait_for_url(console.url(f"/customers/{user_id}"))
    assert await page.inner_text("#balances tr[data-currency=GBP] .balance") == "250.00"
    assert await page.inner_text("#balances tr[data-currency=ETH] .balance") == "1.25000000"
    chain = await page.inner_text("#chain")
    assert "Hash chain verified: 2 accounts, 2 entries" in chain, chain
    assert await page.locator("#ledger tr", has_text="deposit").count() == 2
    await console.shot(page, "customer-view")
    async with stack.engine.connect() as conn:
        looked = (
            await conn.execute(
                text(
                    "SELECT actor_id, ip FROM audit_log "
                    "WHERE action = 'staff.customer.viewed' AND target_id = :u"
                ),
                {"u": str(user_id)},
            )
        ).all()
    assert [tuple(r) for r in looked] == [(support.id, "127.0.0.1")], "who looked at whom is audited"

    # Support staff have no adjustments screen: no link, and a 403 page naming the permission.
    assert await page.locator("nav >> text=Adjustments").count() == 0
    response = await page.goto(console.url("/adjustments"))
    assert response is not None and response.status == 403
    assert "adjustment.propose" in await page.inner_text("#error-detail")

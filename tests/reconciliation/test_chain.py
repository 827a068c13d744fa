"""The chain check, through Esplora (BTC) and Ethereum JSON-RPC (ETH, BNB) on the sandbox chain: a deposit
and a withdrawal that really went through the sagas and the chain reconcile MATCHED; a completed
withdrawal or a credited deposit absent on-chain halts the currency; a halted currency's withdrawal waits
with its funds held and completes after the two-person resume."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import httpx
from sqlalchemy import text

from activities.reconciliation import policy_from
from models.reconciliation import RunStatus
from services.reconciliation import acknowledge, customer_message
from tests.reconciliation.conftest import World


async def _wait_status(world: World, withdrawal_id: uuid.UUID, wanted: str, seconds: float = 30) -> str:
    status = ""
    for _ in range(int(seconds / 0.2)):
        status = await world.withdrawal_status(withdrawal_id)
        if status == wanted:
            return status
        await asyncio.sleep(0.2)
    return status


async def _tx_hash(world: World, withdrawal_id: uuid.UUID) -> str:
    async with world.engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT tx_hash FROM withdrawals WHERE id = :id"), {"id": withdrawal_id}
                )
            ).scalar_one()
        )


async def _drop(world: World, txid: str) -> None:
    async with httpx.AsyncClient(base_url=world.urls["chain"], timeout=5) as c:
        r = await c.post("/_control/drop", json={"txid": txid})
        assert r.status_code == 200, r.text


async def test_deposit_and_withdrawal_through_the_chain_reconcile_matched(world: World) -> None:
    user = await world.customer()
    await world.crypto_deposit(user, "ETH", Decimal("1.5"))
    wid = await world.withdraw(user, "ETH", Decimal("0.4"))
    assert await _wait_status(world, wid, "COMPLETED") == "COMPLETED"
    result = await world.reconcile()
    assert {c.currency: c.status for c in result.currencies} == dict.fromkeys(  # reasons: see below
        ("GBP", "BTC", "ETH", "BNB"), RunStatus.MATCHED
    ), [c.reasons for c in result.currencies]
    async with world.engine.connect() as conn:
        details = (
            await conn.execute(
                text("SELECT details FROM reconciliation_runs WHERE run_id = :r AND currency = 'ETH'"),
                {"r": result.run_id},
            )
        ).scalar_one()
    assert details["missing_on_chain"] == [] and details["deposits_without_chain_tx"] == []


async def test_a_withdrawal_missing_on_chain_halts_its_currency(world: World) -> None:
    user = await world.customer()
    await world.crypto_deposit(user, "BTC", Decimal("0.5"))
    wid = await world.withdraw(user, "BTC", Decimal("0.1"))
    assert await _wait_status(world, wid, "COMPLETED") == "COMPLETED"
    await _drop(world, await _tx_hash(world, wid))
    result = await world.reconcile()
    btc = next(c for c in result.currencies if c.currency == "BTC")
    assert btc.status is RunStatus.DISCREPANCY
    assert any("absent on-chain" in r for r in btc.reasons)
    async with world.engine.connect() as conn:
        details = (
            await conn.execute(
                text("SELECT details FROM reconciliation_runs WHERE run_id = :r AND currency = 'BTC'"),
                {"r": result.run_id},
            )
        ).scalar_one()
        halt = (
            await conn.execute(text("SELECT reason FROM currency_halts WHERE currency = 'BTC'"))
        ).scalar_one()
    assert [m["id"] for m in details["missing_on_chain"]] == [str(wid)]
    assert halt == customer_message("BTC")


async def test_a_deposit_credited_without_its_chain_transaction_halts(world: World) -> None:
    user = await world.customer()
    tx_id = await world.crypto_deposit(user, "BNB", Decimal("3"))
    await _drop(world, tx_id)
    result = await world.reconcile()
    bnb = next(c for c in result.currencies if c.currency == "BNB")
    assert bnb.status is RunStatus.DISCREPANCY
    assert any("without their chain transaction" in r for r in bnb.reasons)
    assert next(c for c in result.currencies if c.currency == "ETH").status is RunStatus.MATCHED


async def test_a_halted_currency_withdrawal_waits_held_and_completes_after_two_person_resume(
    world: World,
) -> None:
    user = await world.customer()
    await world.crypto_deposit(user, "ETH", Decimal("2"))
    balances = await world.control("binance", "GET", "/_control/balances")
    raw = balances["ETH"]["free"] if isinstance(balances["ETH"], dict) else balances["ETH"]
    await world.control("binance", "POST", "/_control/balances", json={"ETH": str(Decimal(str(raw)) - 1)})
    assert (await world.reconcile()).status("ETH") is RunStatus.DISCREPANCY
    wid = await world.withdraw(user, "ETH", Decimal("0.5"))
    assert await _wait_status(world, wid, "HALTED") == "HALTED"
    async with world.engine.connect() as conn:
        reserved = (
            await conn.execute(
                text("SELECT reserved_balance FROM accounts WHERE user_id = :u AND currency = 'ETH'"),
                {"u": user},
            )
        ).scalar_one()
    assert reserved > 0  # the funds are held while it waits
    await world.control("binance", "POST", "/_control/balances", json={"ETH": str(raw)})  # found and put back
    policy = policy_from(world.settings)
    for _ in range(policy.clean_runs_to_resume):
        run = await world.reconcile()
        assert run.status("ETH") is RunStatus.MATCHED, [c for c in run.currencies if c.currency == "ETH"]
    staff = []
    for _ in range(2):
        sid = uuid.uuid4()
        async with world.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, roles) VALUES (:id, :e, 'x', ARRAY['ops'])"
                ),
                {"id": sid, "e": f"ops-{sid.hex[:10]}@example.com"},
            )
        staff.append(sid)
    assert not await acknowledge(
        world.engine, currency="ETH", staff_id=staff[0], reason="venue fixed", override=False, policy=policy
    )
    assert await world.withdrawal_status(wid) == "HALTED"
    assert await acknowledge(
        world.engine, currency="ETH", staff_id=staff[1], reason="checked too", override=False, policy=policy
    )
    assert await _wait_status(world, wid, "COMPLETED") == "COMPLETED"


async def test_a_self_custody_hot_wallet_is_balanced_on_chain(world: World) -> None:
    from services.reconciliation import book_float_funding

    wallet = "0x" + uuid.uuid4().hex + "1234abcd"
    async with httpx.AsyncClient(base_url=world.urls["chain"], timeout=5) as c:
        r = await c.post("/_control/tx", json={"asset": "ETH", "to": wallet, "amount": "5"})
        assert r.status_code == 200
    await book_float_funding(
        world.ledger, source="wallet", currency="ETH", amount=Decimal(5), funding_id=uuid.uuid4()
    )
    world.settings.hot_wallets = {"ETH": wallet}  # the activities read this world's settings object
    result = await world.reconcile()
    assert result.status("ETH") is RunStatus.MATCHED, result.currencies
    # Money leaves the hot wallet with nothing in our books: the drift is found and ETH halted.
    async with httpx.AsyncClient(base_url=world.urls["chain"], timeout=5) as c:
        r = await c.post(
            "/_control/tx", json={"asset": "ETH", "from": wallet, "to": "0x" + "cd" * 20, "amount": "1"}
        )
        assert r.status_code == 200
    result = await world.reconcile()
    eth = next(c for c in result.currencies if c.currency == "ETH")
    assert eth.status is RunStatus.DISCREPANCY and eth.discrepancy == Decimal(-1)

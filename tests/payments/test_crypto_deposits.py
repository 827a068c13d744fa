"""Crypto deposits: each customer gets their own address minted at the deposit provider (Kraken), and the
poller (the real workflow and activity) credits a deposit to whoever owns the address it arrived at, once,
after the required confirmations."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text

from models.payments import CryptoPollInput, CryptoPollResult
from temporal import task_queues
from tests.payments.conftest import Customer, Stack, balance, make_user
from workflows.deposits import CryptoDepositPollWorkflow


async def _address(stack: Stack, customer: Customer) -> str:
    async with stack.http() as c:
        r = await c.get(
            "/api/v1/deposits/instructions", params={"currency": "BTC"}, headers=customer.headers()
        )
    assert r.status_code == 200, r.text
    return str(r.json()["address"])


async def _poll(stack: Stack) -> CryptoPollResult:
    """One run of the scheduled poll, with the schedule's default providers (crypto_deposit_provider)."""
    return await stack.client.execute_workflow(
        CryptoDepositPollWorkflow.run,
        CryptoPollInput(min_confirmations=stack.settings.crypto_deposit_confirmations),
        id=f"crypto-poll-test-{uuid.uuid4()}",
        task_queue=task_queues.PAYMENTS,
    )


async def _credits(stack: Stack, tx_id: str) -> list[tuple[uuid.UUID | None, str, Decimal]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT user_id, status, amount FROM deposits "
                "WHERE provider = 'kraken' AND provider_tx_id = :t"
            ),
            {"t": tx_id},
        )
        return [(r[0], r[1], r[2]) for r in rows]


async def test_each_customer_gets_their_own_address_and_is_credited_once_after_confirmations(
    stack: Stack,
) -> None:
    alice, bob = await make_user(stack), await make_user(stack)
    a_addr, b_addr = await _address(stack, alice), await _address(stack, bob)
    assert a_addr != b_addr
    assert await _address(stack, alice) == a_addr  # asked again: the same, stored address
    async with stack.engine.connect() as conn:
        providers = (
            await conn.execute(
                text("SELECT DISTINCT provider FROM crypto_deposit_addresses WHERE user_id IN (:a, :b)"),
                {"a": alice.id, "b": bob.id},
            )
        ).all()
    assert providers == [("kraken",)]

    to_alice = await stack.kraken(
        "POST", "/_control/deposits", json={"asset": "BTC", "amount": "0.03", "address": a_addr}
    )
    to_bob = await stack.kraken(
        "POST", "/_control/deposits", json={"asset": "BTC", "amount": "0.05", "address": b_addr}
    )
    assert (to_alice["address"], to_bob["address"]) == (a_addr, b_addr)

    await _poll(stack)  # not yet confirmed: nothing credited
    assert await _credits(stack, to_alice["tx_id"]) == [] and await _credits(stack, to_bob["tx_id"]) == []
    assert await balance(stack, alice.id, "BTC") == (Decimal(0), Decimal(0))

    for dep in (to_alice, to_bob):
        await stack.kraken("POST", f"/_control/deposits/{dep['id']}/confirm", json={})
    await _poll(stack)
    await _poll(stack)  # a second poll over the same deposits credits nothing more
    assert await _credits(stack, to_alice["tx_id"]) == [(alice.id, "CONFIRMED", Decimal("0.03"))]
    assert await _credits(stack, to_bob["tx_id"]) == [(bob.id, "CONFIRMED", Decimal("0.05"))]
    assert (await balance(stack, alice.id, "BTC"))[0] == Decimal("0.03")
    assert (await balance(stack, bob.id, "BTC"))[0] == Decimal("0.05")

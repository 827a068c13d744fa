"""Crypto withdrawals through Kraken, which keeps no id of ours: the saga finds the withdrawal by the
`refid` Kraken's answer to the send named (recorded on the withdrawal), so a withdrawal Kraken made
completes instead of waiting for ops. Only a send whose answer was lost stays unknown: NEEDS_ATTENTION
with the funds held, as for any unknown outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from api.sagas import start_withdrawal
from models.payments import WithdrawalInput
from sandbox.control import STATE_KEY
from services import payments
from services.ledger import Ledger
from tests.payments.conftest import Customer, Stack, balance
from tests.payments.test_withdrawal_safety import _btc_customer, _row, _until_status

D = Decimal


async def kraken_withdrawal(stack: Stack, customer: Customer, address_id: str, amount: str) -> uuid.UUID:
    """Record a BTC withdrawal to be sent through Kraken and start its saga (as the API does, with
    Kraken as the crypto provider)."""
    wid = uuid.uuid4()
    accepted = await payments.accept_withdrawal(
        stack.engine, withdrawal_id=wid, user_id=customer.id, currency="BTC", amount=D(amount),
        price_gbp=D("50000"), address_id=uuid.UUID(address_id), bank_account_id=None,
        policy=payments.WithdrawalPolicy(D("10000"), D("50000"), {"BTC": D("0.0002")}),
        crypto_provider="kraken",
    )  # fmt: skip
    s = stack.settings
    await start_withdrawal(
        stack.client,
        WithdrawalInput(
            withdrawal_id=wid, user_id=customer.id, currency="BTC", amount=D(amount), fee=accepted.fee,
            notional_gbp=accepted.notional_gbp, destination=accepted.destination, provider="kraken",
            settle_poll_seconds=s.withdrawal_settle_poll_seconds,
            absence_checks=s.withdrawal_absence_checks,
            absence_interval_seconds=s.withdrawal_absence_interval_seconds,
            requested_at=datetime.now(UTC),
        ),
    )  # fmt: skip
    return wid


async def _fund_kraken(stack: Stack, btc: str) -> None:
    venue = stack_kraken_venue(stack)
    await stack.kraken("POST", "/_control/balances", json={"BTC": str(venue.free.get("BTC", D(0)) + D(btc))})


def stack_kraken_venue(stack: Stack) -> Any:
    """The in-process Kraken sandbox's state (for assertions on its omnibus)."""
    assert stack.kraken_app is not None
    return stack.kraken_app[STATE_KEY].venue


async def test_a_kraken_withdrawal_is_looked_up_by_its_refid_and_completes_with_its_fee_booked(
    stack: Stack,
) -> None:
    customer, address_id = await _btc_customer(stack, "0.01")
    await _fund_kraken(stack, "1")
    venue = stack_kraken_venue(stack)
    before = venue.free.get("BTC", D(0))
    wid = await kraken_withdrawal(stack, customer, address_id, "0.005")

    row = await _until_status(stack, str(wid), "COMPLETED", "NEEDS_ATTENTION")

    assert row["status"] == "COMPLETED", row["reason"]
    network_fee = venue.config.withdrawal_fees["BTC"]
    assert before - venue.free.get("BTC", D(0)) == D("0.005") + network_fee
    async with stack.engine.connect() as conn:
        ref, tx_hash = (
            await conn.execute(
                text("SELECT provider_ref, tx_hash FROM withdrawals WHERE id = :w"), {"w": wid}
            )
        ).one()
        kraken_leg = (
            await conn.execute(
                text(
                    "SELECT sum(e.amount) FROM ledger_entries e "
                    "JOIN ledger_transactions t ON t.id = e.transaction_id "
                    "JOIN accounts a ON a.id = e.account_id "
                    "WHERE t.reference_id = :w AND t.reference_type = 'withdrawal' "
                    "AND a.code = 'provider:kraken'"
                ),
                {"w": wid},
            )
        ).scalar_one()
    [sent] = [w for w in venue.withdrawals.values() if w.tx_id == tx_hash]  # the chain's txid, from Kraken
    assert sent.amount == D("0.005") and ref.startswith("A")  # and Kraken's refid, recorded at the send
    assert kraken_leg == D("0.005") + network_fee  # the omnibus and the books moved alike
    assert await balance(stack, customer.id, "BTC") == (D("0.0048"), D(0))


async def test_a_kraken_withdrawal_whose_answer_was_lost_waits_for_ops_with_the_funds_held(
    stack: Stack,
) -> None:
    """Kraken made the withdrawal but its answer (the refid) never came: nothing names it, so the
    outcome stays unknown. It is never sent again; NEEDS_ATTENTION, hold kept."""
    customer, address_id = await _btc_customer(stack, "0.01")
    await _fund_kraken(stack, "1")
    venue = stack_kraken_venue(stack)
    await stack.kraken(
        "POST", "/_control/faults",
        json={"kind": "timeout_after_accept", "mode": "drop", "count": 1, "paths": ["/0/private/Withdraw"]},
    )  # fmt: skip
    sends_before = len(venue.withdrawals)
    wid = await kraken_withdrawal(stack, customer, address_id, "0.004")

    row = await _until_status(stack, str(wid), "NEEDS_ATTENTION", "COMPLETED", "FAILED")

    assert row["status"] == "NEEDS_ATTENTION", row["reason"]
    assert len(venue.withdrawals) == sends_before + 1  # sent once, never again
    assert (await _row(stack, str(wid)) or {})["hold_id"] is not None
    assert await balance(stack, customer.id, "BTC") == (D("0.01"), D("0.0042"))  # amount + fee held
    handle = stack.client.get_workflow_handle(f"withdrawal-{wid}")
    await handle.terminate("test over")  # ops would resolve it; the hold stays for them
    async with stack.engine.begin() as conn:  # leave the books as ops would after checking Kraken
        await conn.execute(text("UPDATE withdrawals SET status = 'FAILED' WHERE id = :w"), {"w": wid})
    await Ledger(stack.engine).release((await _row(stack, str(wid)) or {})["hold_id"])

"""Treasury moves the float (issue 20 item 8): a float transfer between the sandbox venues, carried by the
sandbox chain, booked in flight then settled with the venue's network fee, and explained by
reconciliation while it is on its way. Above the limit it waits for two different staff with proof."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Replayer

from activities.payments import PaymentActivities
from activities.treasury import APPROVE_DETAIL
from models.payments import CryptoPollInput, FloatCheckInput
from models.reconciliation import RunStatus
from models.treasury import (
    IN_FLIGHT_ACCOUNT,
    FloatTransferInput,
    FloatTransferResult,
    TransferApproval,
    TransferStatus,
)
from sandbox.control import STATE_KEY
from services import treasury
from services.decision_tokens import DecisionTokens
from services.ledger import House, HouseAccount, Leg, Posting
from services.reconciliation import CAPITAL
from tests.reconciliation.conftest import World
from workflows.float_monitor import FloatMonitorWorkflow
from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id

FAST = {"credit_poll_seconds": 0.2, "lookup_poll_seconds": 0.2, "lookup_checks": 20, "credit_checks": 100}


def _venue(world: World, name: str) -> Any:
    return world.apps[name][STATE_KEY].venue


def _confirm_quickly(world: World, *names: str) -> None:
    for name in names:
        _venue(world, name).config.confirmation_seconds = 0.05


async def _house_balance(world: World, code: str, currency: str) -> Decimal:
    async with world.engine.connect() as conn:
        total = (
            await conn.execute(
                text("SELECT coalesce(sum(balance), 0) FROM accounts WHERE code = :c AND currency = :cur"),
                {"c": code, "cur": currency},
            )
        ).scalar_one()
    return Decimal(total)


async def _status(world: World, transfer_id: uuid.UUID) -> str | None:
    row = await treasury.get(world.engine, transfer_id)
    return None if row is None else str(row["status"])


async def _wait_status(world: World, transfer_id: uuid.UUID, wanted: str, seconds: float = 20) -> None:
    for _ in range(int(seconds / 0.1)):
        if await _status(world, transfer_id) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"transfer {transfer_id} is {await _status(world, transfer_id)}, not {wanted}")


async def _start(world: World, **kw: Any) -> tuple[FloatTransferInput, WorkflowHandle[Any, Any]]:
    data = FloatTransferInput(transfer_id=uuid.uuid4(), trigger="test", reason="test", **{**FAST, **kw})
    handle = await world.client.start_workflow(
        FloatTransferWorkflow.run, data, id=float_transfer_workflow_id(data.transfer_id),
        task_queue=world.task_queue,
    )  # fmt: skip
    return data, handle


async def lose_the_answer(world: World, *, lookups: int) -> None:
    """Binance takes the next withdrawal and its answer never arrives; its history shows the withdrawal
    only from the lookup after `lookups` reads."""
    await world.control(
        "binance", "POST", "/_control/faults",
        json={"kind": "timeout_after_accept", "mode": "drop", "count": 1, "paths": ["withdraw/apply"]},
    )  # fmt: skip
    await world.control(
        "binance", "POST", "/_control/faults",
        json={"kind": "not_found_lag", "lookups": lookups, "count": 1, "paths": ["withdraw/apply"]},
    )  # fmt: skip


async def _replay(world: World, workflow_id: str, *workflows: type) -> None:
    history = await world.client.get_workflow_handle(workflow_id).fetch_history()
    await Replayer(workflows=list(workflows), data_converter=pydantic_data_converter).replay_workflow(history)


async def test_a_float_below_its_threshold_is_topped_up_by_a_transfer_that_lands_and_reconciles(
    world: World,
) -> None:
    _confirm_quickly(world, "binance", "kraken")
    # Customer withdrawals have drained Binance's BTC float to 1 (books and venue agree).
    binance = _venue(world, "binance")
    spent = binance.free["BTC"] - Decimal(1)
    binance.free["BTC"] = Decimal(1)
    await world.ledger.post(
        Posting(
            reference_type="test", reference_id=uuid.uuid4(), step="spent", kind="test",
            legs=[
                Leg(House(HouseAccount.provider("binance")), "BTC", spent),
                Leg(House(CAPITAL), "BTC", -spent),
            ],
        )
    )  # fmt: skip
    kraken_before = _venue(world, "kraken").free["BTC"]
    monitor_id = f"float-monitor-{uuid.uuid4()}"
    await world.client.execute_workflow(
        FloatMonitorWorkflow.run,
        FloatCheckInput(thresholds={"BTC": Decimal(3)}, targets={"BTC": Decimal(5)}, providers=["binance"]),
        id=monitor_id,
        task_queue=world.task_queue,
    )
    transfer_id = treasury.top_up_id("binance", "BTC", monitor_id)
    result: FloatTransferResult = await world.client.get_workflow_handle(
        float_transfer_workflow_id(transfer_id), result_type=FloatTransferResult
    ).result()
    assert result.status is TransferStatus.SETTLED
    fee = _venue(world, "kraken").config.withdrawal_fees["BTC"]
    assert result.fee == fee and result.tx_hash
    # The money moved: Binance back at its target, Kraken paid the amount and its network fee.
    assert binance.free["BTC"] == Decimal(5)
    assert _venue(world, "kraken").free["BTC"] == kraken_before - Decimal(4) - fee
    row = await treasury.get(world.engine, transfer_id)
    assert row is not None and row["from_venue"] == "kraken" and row["amount"] == Decimal(4)
    assert row["trigger"] == "float_monitor" and row["approvals_required"] == 0
    assert await _house_balance(world, IN_FLIGHT_ACCOUNT, "BTC") == 0
    # A second check while nothing is short starts nothing more.
    assert await treasury.open_transfer(world.engine, "BTC") is None
    run = await world.reconcile()
    assert {c.currency: c.status for c in run.currencies} == dict.fromkeys(
        ("GBP", "BTC", "ETH", "BNB"), RunStatus.MATCHED
    )
    await _replay(world, float_transfer_workflow_id(transfer_id), FloatTransferWorkflow)
    await _replay(world, monitor_id, FloatMonitorWorkflow)


async def test_a_transfer_in_flight_during_a_run_is_explained_not_drift(world: World) -> None:
    # Kraken (the receiving venue here, and where customer deposits are read) is slow to credit, so the
    # transfer is still on its way: the saga stops polling fast and waits for ops, booked in flight.
    _venue(world, "kraken").config.confirmation_seconds = 10_000
    data, handle = await _start(
        world, currency="ETH", from_venue="binance", to_venue="kraken", amount=Decimal("7"), credit_checks=2,
        attention_recheck_seconds=600,
    )  # fmt: skip
    await _wait_status(world, data.transfer_id, TransferStatus.NEEDS_ATTENTION.value)
    assert await handle.query(FloatTransferWorkflow.attention) == "credit"
    row = await treasury.get(world.engine, data.transfer_id)
    assert row is not None and row["attention"] and "booked in flight" in row["attention"]
    assert await _house_balance(world, IN_FLIGHT_ACCOUNT, "ETH") == Decimal("-7")  # visible, asset side
    run = await world.reconcile()
    eth = next(c for c in run.currencies if c.currency == "ETH")
    assert eth.status is RunStatus.MATCHED, eth.reasons
    async with world.engine.connect() as conn:
        details = (
            await conn.execute(
                text("SELECT details FROM reconciliation_runs WHERE run_id = :r AND currency = 'ETH'"),
                {"r": run.run_id},
            )
        ).scalar_one()
    items = [i for i in details["in_flight_items"] if i["kind"] == "float_transfer"]
    assert [(i["id"], i["booked"], i["credited"]) for i in items] == [(str(data.transfer_id), True, False)]
    # Kraken credits it now, before anyone books it settled: the run explains Kraken's extra 7 ETH with
    # the transfer (and does not take the deposit for a customer's).
    kraken = _venue(world, "kraken")
    dep = next(d for d in kraken.deposits.values() if d.asset == "ETH" and d.amount == Decimal("7"))
    kraken.confirm_deposit(dep.id)
    run = await world.reconcile()
    eth = next(c for c in run.currencies if c.currency == "ETH")
    assert eth.status is RunStatus.MATCHED, eth.reasons
    assert eth.in_flight == Decimal("7")
    await handle.terminate("test over")


async def test_a_transfer_over_the_limit_waits_for_two_different_staff_with_proof(world: World) -> None:
    _confirm_quickly(world, "binance", "kraken")
    limit = world.settings.float_transfer_approval_limits["BTC"]
    amount = limit + 1
    assert treasury.approvals_required("BTC", amount, world.settings.float_transfer_approval_limits) == 2
    maker, alice, bob = await _staff(world), await _staff(world), await _staff(world)
    data, handle = await _start(
        world, currency="BTC", from_venue="binance", to_venue="kraken", amount=amount, approvals_required=2,
        requested_by=maker,
    )  # fmt: skip
    await _wait_status(world, data.transfer_id, TransferStatus.AWAITING_APPROVAL.value)
    tokens = DecisionTokens.from_secret(world.settings.jwt_secret)

    def token(staff: uuid.UUID, detail: str = APPROVE_DETAIL) -> str:
        return tokens.issue(
            actor_id=staff,
            withdrawal_id=data.transfer_id,
            action="approve",
            now=datetime.now(UTC),
            detail=detail,
        )

    await handle.signal(
        FloatTransferWorkflow.approve, TransferApproval(staff_id=alice, token="")
    )  # a bare id
    # The maker cannot also be a checker, even with a valid token.
    await handle.signal(FloatTransferWorkflow.approve, TransferApproval(staff_id=maker, token=token(maker)))
    await handle.signal(FloatTransferWorkflow.approve, TransferApproval(staff_id=bob, token=token(alice)))
    await handle.signal(  # a withdrawal's approval token is not a float transfer's
        FloatTransferWorkflow.approve, TransferApproval(staff_id=bob, token=token(bob, detail=""))
    )
    await handle.signal(FloatTransferWorkflow.approve, TransferApproval(staff_id=alice, token=token(alice)))
    await handle.signal(FloatTransferWorkflow.approve, TransferApproval(staff_id=alice, token=token(alice)))
    for _ in range(50):
        if await handle.query(FloatTransferWorkflow.approvers) == 1:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    assert await handle.query(FloatTransferWorkflow.approvers) == 1  # the same person twice counts once
    assert await _status(world, data.transfer_id) == TransferStatus.AWAITING_APPROVAL.value
    assert not _venue(world, "binance").withdrawals  # nothing sent on one approval
    await handle.signal(FloatTransferWorkflow.approve, TransferApproval(staff_id=bob, token=token(bob)))
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.SETTLED
    assert len(_venue(world, "binance").withdrawals) == 1
    async with world.engine.connect() as conn:
        approvers = (
            await conn.execute(
                text("SELECT staff_id FROM float_transfer_approvals WHERE transfer_id = :t"),
                {"t": data.transfer_id},
            )
        ).all()
    assert {r[0] for r in approvers} == {alice, bob}
    # Kraken is where customer deposits are polled: the transfer's arrival there is house money, never
    # credited to anyone nor put in suspense.
    pay = PaymentActivities(
        engine=world.engine, ledger=world.ledger, settings=world.settings, bank=lambda: world.bank,
        adapters=lambda: world.adapters, email=None,
    )  # fmt: skip
    await ActivityEnvironment().run(
        pay.poll_crypto_deposits, CryptoPollInput(providers=["kraken"], min_confirmations=0)
    )
    async with world.engine.connect() as conn:
        taken = (
            await conn.execute(
                text("SELECT (SELECT count(*) FROM deposits) + (SELECT count(*) FROM deposit_suspense)")
            )
        ).scalar_one()
    assert taken == 0
    run = await world.reconcile()
    assert next(c for c in run.currencies if c.currency == "BTC").status is RunStatus.MATCHED
    await _replay(world, float_transfer_workflow_id(data.transfer_id), FloatTransferWorkflow)


async def test_a_transfer_not_approved_in_time_moves_nothing(world: World) -> None:
    data, handle = await _start(
        world, currency="BNB", from_venue="binance", to_venue="kraken", amount=Decimal("5000"),
        approvals_required=2, approval_timeout_seconds=0.5,
    )  # fmt: skip
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.REJECTED
    assert not _venue(world, "binance").withdrawals


async def _staff(world: World) -> uuid.UUID:
    staff_id = uuid.uuid4()
    async with world.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, password_hash, roles) VALUES (:id, :e, 'x', ARRAY['ops'])"),
            {"id": staff_id, "e": f"ops-{staff_id.hex[:10]}@example.com"},
        )
    return staff_id


async def test_a_withdrawal_whose_answer_is_lost_is_looked_up_and_never_sent_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="treasury")
    _confirm_quickly(world, "binance", "kraken")
    # Binance takes the withdrawal, then the answer never arrives; its history lags two reads behind.
    await lose_the_answer(world, lookups=2)
    data, handle = await _start(
        world, currency="BNB", from_venue="binance", to_venue="kraken", amount=Decimal("12")
    )
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.SETTLED
    sent = list(_venue(world, "binance").withdrawals.values())
    assert len(sent) == 1 and sent[0].client_id == treasury.venue_client_id(data.transfer_id)
    assert "withdrawal outcome unknown" in caplog.text  # the answer was lost, and it was looked up
    run = await world.reconcile()
    assert next(c for c in run.currencies if c.currency == "BNB").status is RunStatus.MATCHED


async def test_a_venue_refusal_moves_nothing_and_books_nothing(world: World) -> None:
    await world.control(
        "binance", "POST", "/_control/faults",
        json={"kind": "insufficient_balance", "count": 1, "paths": ["withdraw/apply"]},
    )  # fmt: skip
    data, handle = await _start(
        world, currency="ETH", from_venue="binance", to_venue="kraken", amount=Decimal("3")
    )
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.REJECTED
    assert await _house_balance(world, IN_FLIGHT_ACCOUNT, "ETH") == 0
    assert not _venue(world, "binance").withdrawals

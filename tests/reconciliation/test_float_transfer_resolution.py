"""A float transfer the saga cannot finish waits in NEEDS_ATTENTION for ops' word (the `resolve` update):
each word counts only with a decision token for that staff member, transfer, outcome and facts, from an
active ops user, answering the wait the saga is in; above the limit two different staff must give the same
word; everything is audited; a venue that shows otherwise outweighs the word."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from models.reconciliation import RunStatus
from models.treasury import (
    IN_FLIGHT_ACCOUNT,
    FloatTransferResult,
    ResolutionOutcomeKind,
    TransferApproval,
    TransferResolution,
    TransferResolutionOutcome,
    TransferStatus,
)
from services import treasury
from services.decision_tokens import DecisionTokens
from services.ledger import HouseAccount
from tests.reconciliation.conftest import World
from tests.reconciliation.test_float_transfers import (
    _confirm_quickly,
    _house_balance,
    _replay,
    _staff,
    _start,
    _venue,
    _wait_status,
    lose_the_answer,
)
from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id


def _word(
    world: World, transfer_id: uuid.UUID, staff: uuid.UUID, outcome: ResolutionOutcomeKind, **facts: Any
) -> TransferResolution:
    """A resolution with the token the admin API signs after the staff member's TOTP."""
    r = TransferResolution(outcome=outcome, note="checked with the venue's support", staff_id=staff, **facts)
    r.token = DecisionTokens.from_secret(world.settings.jwt_secret).issue(
        actor_id=staff,
        withdrawal_id=transfer_id,
        action=r.action,
        now=datetime.now(UTC),
        detail=r.proof_detail,
    )
    return r


async def _resolve(handle: WorkflowHandle[Any, Any], r: TransferResolution) -> TransferResolutionOutcome:
    return await handle.execute_update("resolve", r, result_type=TransferResolutionOutcome)


async def _audited(world: World, transfer_id: uuid.UUID) -> list[tuple[str, str | None]]:
    async with world.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, details->>'refusal' FROM audit_log WHERE target_id = :t "
                    "AND action LIKE 'float_transfer.resolution%' ORDER BY created_at, id"
                ),
                {"t": str(transfer_id)},
            )
        ).all()
    return [(r[0], r[1]) for r in rows]


async def test_a_credit_that_never_shows_waits_for_ops_whose_proven_word_settles_it(world: World) -> None:
    _venue(world, "binance").config.confirmation_seconds = 0.05
    kraken = _venue(world, "kraken")
    kraken.config.confirmation_seconds = 10_000  # Kraken's credit does not come while the saga polls
    data, handle = await _start(
        world, currency="ETH", from_venue="binance", to_venue="kraken", amount=Decimal("3"), credit_checks=2,
        attention_recheck_seconds=600,
    )  # fmt: skip
    await _wait_status(world, data.transfer_id, TransferStatus.NEEDS_ATTENTION.value)
    assert await handle.query(FloatTransferWorkflow.attention) == "credit"
    alice = await _staff(world)
    bare = TransferResolution(outcome=ResolutionOutcomeKind.CREDITED, note="trust me", staff_id=alice)
    assert (await _resolve(handle, bare)).code == "unproven"  # a bare id is not a decision
    other = await _staff(world)
    stolen = _word(world, data.transfer_id, other, ResolutionOutcomeKind.CREDITED)
    stolen.staff_id = alice
    assert (await _resolve(handle, stolen)).code == "unproven"  # someone else's token
    sent = _word(world, data.transfer_id, alice, ResolutionOutcomeKind.SENT, tx_hash="0xab", fee=Decimal(1))
    assert (await _resolve(handle, sent)).code == "wrong_stage"
    customer = await world.customer()
    assert (
        await _resolve(handle, _word(world, data.transfer_id, customer, ResolutionOutcomeKind.CREDITED))
    ).code == "not_ops"
    assert await _status_of(world, data.transfer_id) == TransferStatus.NEEDS_ATTENTION.value
    # Ops see the credit in Kraken's own records before the saga's next look, and say so.
    dep = next(d for d in kraken.deposits.values() if d.asset == "ETH" and d.amount == Decimal("3"))
    kraken.confirm_deposit(dep.id)
    word = _word(world, data.transfer_id, alice, ResolutionOutcomeKind.CREDITED)
    outcome = await _resolve(handle, word)
    assert outcome.accepted and (outcome.approvers, outcome.required) == (1, 1)
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.SETTLED
    assert await _house_balance(world, IN_FLIGHT_ACCOUNT, "ETH") == 0
    assert await _audited(world, data.transfer_id) == [
        ("float_transfer.resolution.refused", "unproven"),
        ("float_transfer.resolution.refused", "unproven"),
        ("float_transfer.resolution.refused", "wrong_stage"),
        ("float_transfer.resolution.refused", "not_ops"),
        ("float_transfer.resolution", None),
    ]
    run = await world.reconcile()
    assert run.status("ETH") is RunStatus.MATCHED
    await _replay(world, float_transfer_workflow_id(data.transfer_id), FloatTransferWorkflow)


async def test_above_the_limit_two_staff_must_give_the_same_word_and_a_return_is_booked_back(
    world: World,
) -> None:
    _venue(world, "binance").config.confirmation_seconds = 0.05
    _venue(world, "kraken").config.confirmation_seconds = 10_000
    amount = world.settings.float_transfer_approval_limits["ETH"] + 1
    maker, alice, bob = await _staff(world), await _staff(world), await _staff(world)
    data, handle = await _start(
        world, currency="ETH", from_venue="binance", to_venue="kraken", amount=amount, approvals_required=2,
        requested_by=maker, credit_checks=2, attention_recheck_seconds=600,
    )  # fmt: skip
    await _wait_status(world, data.transfer_id, TransferStatus.AWAITING_APPROVAL.value)
    tokens = DecisionTokens.from_secret(world.settings.jwt_secret)
    for staff in (alice, bob):
        token = tokens.issue(
            actor_id=staff, withdrawal_id=data.transfer_id, action="approve", now=datetime.now(UTC),
            detail="float_transfer",
        )  # fmt: skip
        await handle.signal(FloatTransferWorkflow.approve, TransferApproval(staff_id=staff, token=token))
    await _wait_status(world, data.transfer_id, TransferStatus.NEEDS_ATTENTION.value)
    binance_before = await _house_balance(world, HouseAccount.provider("binance"), "ETH")
    returned = ResolutionOutcomeKind.RETURNED
    first = await _resolve(handle, _word(world, data.transfer_id, alice, returned))
    assert first.accepted and (first.approvers, first.required) == (1, 2)
    again = await _resolve(handle, _word(world, data.transfer_id, alice, returned))  # the same person twice
    assert again.accepted and again.approvers == 1
    differs = await _resolve(handle, _word(world, data.transfer_id, bob, ResolutionOutcomeKind.CREDITED))
    assert differs.accepted and differs.approvers == 1  # another word: it does not add up with alice's
    assert await _status_of(world, data.transfer_id) == TransferStatus.NEEDS_ATTENTION.value
    # The chain gave the funds back to Binance; a second person confirms what alice found.
    _venue(world, "binance").free["ETH"] += amount
    second = await _resolve(handle, _word(world, data.transfer_id, bob, returned))
    assert second.accepted and second.approvers == 2
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.RETURNED and result.fee
    assert await _house_balance(world, IN_FLIGHT_ACCOUNT, "ETH") == 0
    # Back at Binance (house accounts are kept from the liability side: an asset up is a negative sum).
    assert await _house_balance(world, HouseAccount.provider("binance"), "ETH") == binance_before - amount
    row = await treasury.get(world.engine, data.transfer_id)
    assert row is not None and row["status"] == "RETURNED" and "returned to binance" in row["attention"]
    assert (await world.reconcile()).status("ETH") is RunStatus.MATCHED
    await _replay(world, float_transfer_workflow_id(data.transfer_id), FloatTransferWorkflow)


async def test_an_unknown_send_resolved_as_not_sent_follows_the_venue_when_it_shows_the_withdrawal(
    world: World,
) -> None:
    _confirm_quickly(world, "binance", "kraken")
    # Binance takes the withdrawal and the answer is lost; its history shows it only from the third read.
    await lose_the_answer(world, lookups=2)
    data, handle = await _start(
        world, currency="BNB", from_venue="binance", to_venue="kraken", amount=Decimal("4"), lookup_checks=2,
        attention_recheck_seconds=600,
    )  # fmt: skip
    await _wait_status(world, data.transfer_id, TransferStatus.NEEDS_ATTENTION.value)
    assert await handle.query(FloatTransferWorkflow.attention) == "send"
    alice = await _staff(world)
    word = await _resolve(handle, _word(world, data.transfer_id, alice, ResolutionOutcomeKind.NOT_SENT))
    assert word.accepted
    # The saga looked once more: Binance shows the withdrawal now, so it was sent, whatever was said.
    result = FloatTransferResult.model_validate(await handle.result())
    assert result.status is TransferStatus.SETTLED
    assert len(_venue(world, "binance").withdrawals) == 1
    assert (await world.reconcile()).status("BNB") is RunStatus.MATCHED
    await _replay(world, float_transfer_workflow_id(data.transfer_id), FloatTransferWorkflow)


async def _status_of(world: World, transfer_id: uuid.UUID) -> str | None:
    row = await treasury.get(world.engine, transfer_id)
    return None if row is None else str(row["status"])


async def test_a_history_that_ended_in_needs_attention_before_the_resolve_action_still_replays() -> None:
    """Recorded with the saga as it was before it waited for ops (it returned NEEDS_ATTENTION): the
    current saga replays it unchanged (the waiting is behind a patch)."""
    history = WorkflowHistory.from_json(
        "float-transfer-before-resolve",
        (
            Path(__file__).parent / "histories" / "float_transfer_needs_attention_before_resolve.json"
        ).read_text(),
    )
    await Replayer(workflows=[FloatTransferWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        history
    )

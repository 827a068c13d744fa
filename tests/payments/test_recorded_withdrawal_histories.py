"""Withdrawal sagas recorded before a change still replay on the current `WithdrawalWorkflow`."""

from __future__ import annotations

from tests.histories import replay_recorded
from workflows.withdrawals import WithdrawalWorkflow


async def test_recorded_withdrawal_histories_replay_on_the_current_workflow() -> None:
    # Approvals and rejections (signal and update), cancel, halts, webhooks, lookups, NEEDS_ATTENTION
    # and ops' resolution, a refused reservation.
    assert await replay_recorded("withdrawals", WithdrawalWorkflow) >= 20

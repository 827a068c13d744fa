"""The withdrawal saga's AML phase: screening before the money leaves, and compliance's decision.

`WithdrawalWorkflow` (workflows/withdrawals.py) inherits these steps and calls `_screen` right after the
funds are held. The live rule set's outcome (services/aml) decides: approve and review go on (review has
raised an alert for compliance); decline releases the hold and refuses at once; block_and_review keeps
the hold and waits in UNDER_REVIEW, as long as it takes, for compliance's `compliance_decision` (clear:
go on; decline: release and refuse). A decision counts only with a decision token for `aml_clear` /
`aml_decline` on this withdrawal issued to a compliance user, verified in an activity and audited.

No tipping off: the customer sees the status UNDER_REVIEW with the reason "under review", and a refusal
as "withdrawal refused"; the rules, scores and alerts stay internal.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.aml import AmlActivities
    from models.aml import AmlOutcome, AmlSubjectType, ComplianceDecision, ComplianceProofCheck, ScreenRequest
    from models.payments import WithdrawalInput, WithdrawalStatus

from workflows import withdrawal_policies as policy


class WithdrawalScreening:
    """The AML screening phase of the withdrawal saga."""

    _w: WithdrawalInput
    _status: WithdrawalStatus
    _decisions: asyncio.Lock
    _compliance: str | None  # "clear" | "decline", once proven

    async def _set(self, status: WithdrawalStatus, reason: str | None = None) -> None:
        raise NotImplementedError

    async def _finish(self, status: WithdrawalStatus, reason: str) -> None:
        raise NotImplementedError

    async def _screen(self, w: WithdrawalInput) -> bool:
        """AML monitoring before the money leaves, under the live rule set: approve and review go on
        (review has raised an alert for compliance); decline releases the hold and refuses at once;
        block_and_review keeps the hold and waits in UNDER_REVIEW for compliance's proven decision.
        Histories from before this phase replay without it (the patch marker)."""
        if not workflow.patched(policy.AML_SCREEN_PATCH):
            return True
        answer = await workflow.execute_activity_method(
            AmlActivities.screen_withdrawal,
            ScreenRequest(subject_type=AmlSubjectType.WITHDRAWAL, subject_id=str(w.withdrawal_id)),
            start_to_close_timeout=policy.DB_TIMEOUT,
            retry_policy=policy.DB_RETRY,
        )
        if answer.outcome in (AmlOutcome.APPROVE, AmlOutcome.REVIEW):
            return True
        if answer.outcome == AmlOutcome.BLOCK_AND_REVIEW:
            await self._set(WithdrawalStatus.UNDER_REVIEW, policy.UNDER_REVIEW_REASON)
            await workflow.wait_condition(lambda: self._compliance is not None)
            async with self._decisions:  # a decision in flight finishes first
                pass
            if self._compliance == "clear":
                await self._set(WithdrawalStatus.PENDING, "")  # "" clears the "under review" reason
                return True
        await self._finish(WithdrawalStatus.FAILED, policy.REFUSED_REASON)
        return False

    async def _consider_compliance(self, decision: ComplianceDecision) -> None:
        """Compliance's word on a withdrawal held in UNDER_REVIEW; it counts only once its proof is
        verified (an activity, audited either way), and only while the withdrawal waits for it."""
        async with self._decisions:
            if self._status != WithdrawalStatus.UNDER_REVIEW or self._compliance is not None:
                return
            proven = await workflow.execute_activity_method(
                AmlActivities.verify_decision,
                ComplianceProofCheck(
                    withdrawal_id=self._w.withdrawal_id,
                    decision=decision.decision,
                    token=decision.token,
                    staff_id=decision.staff_id,
                    case_id=decision.case_id,
                ),
                start_to_close_timeout=policy.DB_TIMEOUT,
                retry_policy=policy.DB_RETRY,
            )
            if proven and decision.decision in ("clear", "decline"):
                self._compliance = decision.decision

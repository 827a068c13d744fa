"""The withdrawal saga: one `WithdrawalWorkflow` per withdrawal, id `withdrawal-<uuid>`.

Steps: reserve amount + fee → (approval, if required) → wait out a currency halt → execute through the
bank (GBP) or the provider (crypto) → commit the hold and book the fee, or release it. The customer is
emailed the outcome either way.

People talk to it through:
- signals `approve` / `reject` with `{"approver_id": "<uuid>", "reason": "..."}` — what
  `temporal workflow signal --workflow-id withdrawal-<id> --name approve --input '{...}'` sends;
- updates `approve_withdrawal` / `reject_withdrawal` (same input, answer says whether it counted) — what
  the admin API uses; `cancel` (the customer, until execution starts); `accepted` (waits until the funds
  are reserved or refused: the API's synchronous answer);
- signal `payout_settled` from the bank webhook; query `state`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import ERRORS, PaymentActivities
    from models.payments import (
        FINAL_WITHDRAWAL_STATUSES,
        CompleteInput,
        Decision,
        DecisionCheck,
        DecisionOutcome,
        ExecutionOutcome,
        HaltQuery,
        PayoutUpdate,
        ReleaseInput,
        StatusChange,
        WithdrawalInput,
        WithdrawalNotice,
        WithdrawalState,
        WithdrawalStatus,
    )
    from temporal.search_attributes import WITHDRAWAL_STATUS

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[ERRORS.INSUFFICIENT_FUNDS, ERRORS.LEDGER_REFUSED],
)
# Sending money: retried without limit, because every attempt first asks whether the previous one
# landed; giving up would leave the hold and the payout state unknown.
SEND_TIMEOUT = timedelta(seconds=60)
SEND_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    maximum_interval=timedelta(seconds=60),
    non_retryable_error_types=[ERRORS.UNKNOWN_PROVIDER],
)
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


def withdrawal_workflow_id(withdrawal_id: uuid.UUID | str) -> str:
    return f"withdrawal-{withdrawal_id}"


@workflow.defn
class WithdrawalWorkflow:
    """Guarantees: the funds are held before anything else; nothing is sent without the approvals the
    amount requires (distinct users with the approver role, never the requester, checked against the
    users table whatever the channel); no decision within the timeout rejects it; a halted currency
    waits; once sent, the money is looked up rather than resent; every ending either commits the hold
    (amount out, fee to revenue) or releases it in full."""

    @workflow.init
    def __init__(self, w: WithdrawalInput) -> None:
        self._w = w
        self._status = WithdrawalStatus.PENDING
        self._reason: str | None = None
        self._hold_id: uuid.UUID | None = None
        self._accepted: bool | None = None
        self._approvals: list[uuid.UUID] = []
        self._rejected = False
        self._cancelled = False
        self._payout: PayoutUpdate | None = None
        self._decisions = asyncio.Lock()

    # --- people ----------------------------------------------------------------------------

    @workflow.signal(name="approve")
    async def approve(self, decision: Decision) -> None:
        await self._decide("approve", decision)

    @workflow.signal(name="reject")
    async def reject(self, decision: Decision) -> None:
        await self._decide("reject", decision)

    @workflow.update(name="approve_withdrawal")
    async def approve_withdrawal(self, decision: Decision) -> DecisionOutcome:
        return await self._decide("approve", decision)

    @workflow.update(name="reject_withdrawal")
    async def reject_withdrawal(self, decision: Decision) -> DecisionOutcome:
        return await self._decide("reject", decision)

    @workflow.update(name="cancel")
    def cancel(self) -> WithdrawalState:
        self._cancelled = True
        return self.state()

    @cancel.validator
    def _cancel_allowed(self) -> None:
        if self._status in FINAL_WITHDRAWAL_STATUSES or self._status == WithdrawalStatus.PROCESSING:
            raise ApplicationError(f"the withdrawal is {self._status.value}", type="NotCancellable")

    @workflow.update(name="accepted")
    async def accepted(self) -> WithdrawalState:
        await workflow.wait_condition(lambda: self._accepted is not None)
        return self.state()

    @workflow.signal(name="payout_settled")
    def payout_settled(self, update: PayoutUpdate) -> None:
        self._payout = update

    @workflow.query(name="state")
    def state(self) -> WithdrawalState:
        return WithdrawalState(
            withdrawal_id=self._w.withdrawal_id,
            status=self._status.value,
            reason=self._reason,
            approvals=list(self._approvals),
            approvals_required=self._w.approvals_required,
        )

    async def _decide(self, kind: str, d: Decision) -> DecisionOutcome:
        """One decision at a time; the activity checks the approver's role in the database."""
        async with self._decisions:
            if self._status != WithdrawalStatus.AWAITING_APPROVAL or self._rejected or self._cancelled:
                return DecisionOutcome(
                    accepted=False,
                    code="not_awaiting_approval",
                    detail=f"the withdrawal is {self._status.value}",
                    status=self._status.value,
                )
            verdict = await workflow.execute_activity_method(
                PaymentActivities.judge_decision,
                DecisionCheck(
                    withdrawal_id=self._w.withdrawal_id,
                    requester_id=self._w.user_id,
                    approver_id=d.approver_id,
                    decision=kind,
                    reason=d.reason,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            if not verdict.accepted:
                verdict.status = self._status.value
                return verdict
            if self._status != WithdrawalStatus.AWAITING_APPROVAL:  # timed out meanwhile
                return DecisionOutcome(
                    accepted=False, code="not_awaiting_approval", status=self._status.value
                )
            if kind == "reject":
                self._rejected = True
                self._reason = (
                    f"rejected by an approver: {d.reason}" if d.reason else "rejected by an approver"
                )
                return DecisionOutcome(accepted=True, code="rejected", status=self._status.value)
            if d.approver_id not in self._approvals:
                self._approvals.append(d.approver_id)
            done = len(self._approvals) >= self._w.approvals_required
            return DecisionOutcome(
                accepted=True,
                code="approved" if done else "approval_recorded",
                detail=f"{len(self._approvals)} of {self._w.approvals_required} approvals",
                status=self._status.value,
            )

    # --- the saga --------------------------------------------------------------------------

    @workflow.run
    async def run(self, w: WithdrawalInput) -> WithdrawalState:
        try:
            self._hold_id = await workflow.execute_activity_method(
                PaymentActivities.reserve_withdrawal,
                w,
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
        except ActivityError as e:
            cause = e.cause
            reason = (
                str(cause.message) if isinstance(cause, ApplicationError) else "the funds could not be held"
            )
            await self._finish(WithdrawalStatus.FAILED, reason, notify=False)
            self._accepted = False
            return await self._done()
        self._accepted = True

        if w.approvals_required > 0:
            await self._set(WithdrawalStatus.AWAITING_APPROVAL)
            try:
                await workflow.wait_condition(
                    lambda: self._cancelled or self._rejected or len(self._approvals) >= w.approvals_required,
                    timeout=timedelta(seconds=w.approval_timeout_seconds),
                )
            except TimeoutError:
                hours = w.approval_timeout_seconds / 3600
                await self._finish(WithdrawalStatus.REJECTED, f"no approval decision within {hours:g} h")
                return await self._done()
            async with self._decisions:  # let a decision in flight finish first
                pass
            if self._cancelled:
                await self._finish(WithdrawalStatus.CANCELLED, "cancelled by the customer")
                return await self._done()
            if self._rejected:
                await self._finish(WithdrawalStatus.REJECTED, self._reason or "rejected")
                return await self._done()
            await self._set(WithdrawalStatus.APPROVED)

        while True:
            halted = await workflow.execute_activity_method(
                PaymentActivities.currency_halted,
                HaltQuery(currency=w.currency),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            if halted is None or self._cancelled:
                break
            if self._status != WithdrawalStatus.HALTED:
                await self._set(WithdrawalStatus.HALTED, f"{w.currency} withdrawals are halted: {halted}")
            try:
                await workflow.wait_condition(
                    lambda: self._cancelled, timeout=timedelta(seconds=w.halt_poll_seconds)
                )
            except TimeoutError:
                continue
        if self._cancelled:
            await self._finish(WithdrawalStatus.CANCELLED, "cancelled by the customer")
            return await self._done()

        await self._set(WithdrawalStatus.PROCESSING)
        outcome = await workflow.execute_activity_method(
            PaymentActivities.execute_withdrawal,
            w,
            start_to_close_timeout=SEND_TIMEOUT,
            retry_policy=SEND_RETRY,
        )
        while outcome.status == "pending":
            try:
                await workflow.wait_condition(
                    lambda: self._payout is not None, timeout=timedelta(seconds=w.settle_poll_seconds)
                )
            except TimeoutError:  # no webhook (yet): ask
                outcome = await workflow.execute_activity_method(
                    PaymentActivities.settlement_status,
                    w,
                    start_to_close_timeout=SEND_TIMEOUT,
                    retry_policy=SEND_RETRY,
                )
                continue
            assert self._payout is not None
            if self._payout.status in ("completed", "failed"):
                outcome = ExecutionOutcome(
                    status=self._payout.status,
                    provider_ref=self._payout.payout_id or outcome.provider_ref,
                    reason=self._payout.reason,
                )
            self._payout = None

        if outcome.status == "completed":
            await workflow.execute_activity_method(
                PaymentActivities.complete_withdrawal,
                CompleteInput(
                    withdrawal=w,
                    hold_id=self._hold_id,
                    provider_ref=outcome.provider_ref,
                    tx_hash=outcome.tx_hash,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            self._status = WithdrawalStatus.COMPLETED
            self._upsert()
            await self._notify()
        else:
            await self._finish(WithdrawalStatus.FAILED, outcome.reason or "the payment failed")
        return await self._done()

    async def _done(self) -> WithdrawalState:
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    def _upsert(self) -> None:
        workflow.upsert_search_attributes([WITHDRAWAL_STATUS.value_set(self._status.value)])

    async def _set(self, status: WithdrawalStatus, reason: str | None = None) -> None:
        self._status = status
        self._reason = reason
        self._upsert()
        await workflow.execute_activity_method(
            PaymentActivities.mark_withdrawal,
            StatusChange(withdrawal_id=self._w.withdrawal_id, status=status, reason=reason),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    async def _finish(self, status: WithdrawalStatus, reason: str, *, notify: bool = True) -> None:
        """Compensation: release the hold in full and record the final status."""
        self._status = status
        self._reason = reason
        await workflow.execute_activity_method(
            PaymentActivities.release_withdrawal,
            ReleaseInput(
                withdrawal_id=self._w.withdrawal_id,
                hold_id=self._hold_id,
                status=status,
                reason=reason,
            ),
            start_to_close_timeout=DB_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._upsert()
        if notify:
            await self._notify()

    async def _notify(self) -> None:
        try:
            await workflow.execute_activity_method(
                PaymentActivities.notify_withdrawal,
                WithdrawalNotice(
                    withdrawal_id=self._w.withdrawal_id,
                    user_id=self._w.user_id,
                    currency=self._w.currency,
                    amount=self._w.amount,
                    status=self._status.value,
                    reason=self._reason,
                ),
                start_to_close_timeout=NOTIFY_TIMEOUT,
                retry_policy=NOTIFY_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("withdrawal %s: the email failed", self._w.withdrawal_id)

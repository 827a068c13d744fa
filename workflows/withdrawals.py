"""The withdrawal saga: one `WithdrawalWorkflow` per withdrawal, id `withdrawal-<uuid>`.

Phases (`WithdrawalWorkflow.run`): reserve amount + fee → AML screening (the live rule set: go on, hold
for compliance in UNDER_REVIEW, or refuse) → await approval, if required → wait out a
currency halt → execute and settle: send once through the bank (GBP) or the provider (crypto), learn
the outcome by our id, commit the hold and book the fees, or release it. The customer is emailed the
outcome either way. An outcome that stays unknown, or books that cannot be completed, end in
NEEDS_ATTENTION with the hold kept until ops resolve it. Timeouts and retry policies, and the pure
rules the phases apply, are in workflows/withdrawal_policies.py.

People talk to it through (every human decision carries a decision token, verified in an activity; a
bare id is refused and audited):
- signals `approve` / `reject` with `{"approver_id": "<uuid>", "reason": "...", "token": "<token>"}` —
  what `temporal workflow signal --workflow-id withdrawal-<id> --name approve --input '{...}'` sends, the
  token from `python -m cli approval-token`;
- updates `approve_withdrawal` / `reject_withdrawal` (same input, answer says whether it counted) — what
  the admin API uses; `cancel` (the customer, until execution starts); `accepted` (waits until the funds
  are reserved or refused: the API's synchronous answer);
- update `resolve` (ops, for NEEDS_ATTENTION: paid or not paid, with a token);
- signal `payout_settled` from the bank webhook route (with the proof it signs); query `state`;
- signal `compliance_decision` with `{"decision": "clear"|"decline", "token": "<token>"}` (a token for
  `aml_clear` / `aml_decline` on this withdrawal, issued to a compliance user) for a withdrawal held in
  UNDER_REVIEW: clear goes on, decline releases the hold and refuses it. The customer sees only "under
  review" and "withdrawal refused", never why.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from models.aml import ComplianceDecision
    from models.payments import (
        AttentionNotice,
        CompleteInput,
        Decision,
        DecisionCheck,
        DecisionOutcome,
        ExecutionOutcome,
        HaltQuery,
        PayoutUpdate,
        ProofCheck,
        ReleaseInput,
        Resolution,
        StatusChange,
        WithdrawalInput,
        WithdrawalNotice,
        WithdrawalState,
        WithdrawalStatus,
    )
    from models.payments import (
        withdrawal_workflow_id as withdrawal_workflow_id,  # the id rule lives with the I/O types
    )
    from temporal.search_attributes import WITHDRAWAL_STATUS

from workflows import withdrawal_policies as policy
from workflows.withdrawal_screening import WithdrawalScreening

A = TypeVar("A")
R = TypeVar("R")


@workflow.defn
class WithdrawalWorkflow(WithdrawalScreening):
    """Guarantees: the funds are held before anything else (and only while the withdrawal is live); nothing
    is sent without the approvals the customer's rolling 24 h total requires (distinct users with the
    approver role, never the requester, each decision proven by a token, checked against the users table
    whatever the channel); no decision within the timeout rejects it; a halted currency waits; money is
    sent at most once per send decision and only re-sent when the previous attempt provably never reached
    the other side; an unknown outcome ("not found" included) is asked about, never read as failure; every
    ending either commits the hold (amount and network fee out, fee to revenue) or releases it in full,
    or waits visibly in NEEDS_ATTENTION with the hold kept until ops resolve it."""

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
        self._resolution: Resolution | None = None
        self._decisions = asyncio.Lock()
        self._compliance: str | None = None  # "clear" | "decline", once proven

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
        """Only before sending: once the money may have left (PROCESSING, NEEDS_ATTENTION) or the
        withdrawal is final, there is nothing the customer can take back."""
        if self._status not in policy.CANCELLABLE:
            raise ApplicationError(f"the withdrawal is {self._status.value}", type="NotCancellable")

    @workflow.update(name="accepted")
    async def accepted(self) -> WithdrawalState:
        await workflow.wait_condition(lambda: self._accepted is not None)
        return self.state()

    @workflow.signal(name="payout_settled")
    def payout_settled(self, update: PayoutUpdate) -> None:
        """The bank's word from our webhook route; it counts only once its proof is verified."""
        self._payout = update

    @workflow.signal(name="compliance_decision")
    async def compliance_decision(self, decision: ComplianceDecision) -> None:
        """Compliance's word on a withdrawal held in UNDER_REVIEW (see `WithdrawalScreening`)."""
        await self._consider_compliance(decision)

    @workflow.update(name="resolve")
    async def resolve(self, resolution: Resolution) -> DecisionOutcome:
        """Ops' answer for NEEDS_ATTENTION (paid / not paid), counted only with a valid token."""
        async with self._decisions:
            if self._status != WithdrawalStatus.NEEDS_ATTENTION or self._resolution is not None:
                return self._answer(False, "not_needing_attention", f"the withdrawal is {self._status.value}")
            proven = await self._db(
                PaymentActivities.verify_proof,
                ProofCheck(
                    withdrawal_id=self._w.withdrawal_id,
                    action="resolve_paid" if resolution.paid else "resolve_not_paid",
                    actor_id=resolution.staff_id,
                    token=resolution.token,
                    detail=resolution.reason,
                ),
            )
            if not proven:
                return self._answer(
                    False, "unproven", "the resolution carries no valid proof from an ops user"
                )
            self._resolution = resolution
            return self._answer(True, "resolved_paid" if resolution.paid else "resolved_not_paid")

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
                return self._answer(False, "not_awaiting_approval", f"the withdrawal is {self._status.value}")
            verdict = await self._db(
                PaymentActivities.judge_decision,
                DecisionCheck(
                    withdrawal_id=self._w.withdrawal_id,
                    requester_id=self._w.user_id,
                    approver_id=d.approver_id,
                    decision=kind,
                    reason=d.reason,
                    token=d.token,
                ),
            )
            if not verdict.accepted:
                verdict.status = self._status.value
                return verdict
            if self._status != WithdrawalStatus.AWAITING_APPROVAL:  # timed out meanwhile
                return self._answer(False, "not_awaiting_approval")
            if kind == "reject":
                self._rejected = True
                self._reason = (
                    f"rejected by an approver: {d.reason}" if d.reason else "rejected by an approver"
                )
                return self._answer(True, "rejected")
            if d.approver_id not in self._approvals:
                self._approvals.append(d.approver_id)
            done = len(self._approvals) >= self._w.approvals_required
            count = f"{len(self._approvals)} of {self._w.approvals_required} approvals"
            return self._answer(True, "approved" if done else "approval_recorded", count)

    def _answer(self, accepted: bool, code: str, detail: str = "") -> DecisionOutcome:
        """A decision's answer, with the status the withdrawal is in now."""
        return DecisionOutcome(accepted=accepted, code=code, detail=detail, status=self._status.value)

    # --- the saga --------------------------------------------------------------------------

    @workflow.run
    async def run(self, w: WithdrawalInput) -> WithdrawalState:
        """The saga in its phases, each ending the withdrawal (False) or handing on to the next; then,
        as Temporal asks, every decision or resolution still being handled finishes before the end."""
        if (
            await self._reserve(w)
            and await self._screen(w)
            and await self._await_approval(w)
            and await self._wait_out_halt(w)
        ):
            await self._execute_and_settle(w)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state()

    async def _reserve(self, w: WithdrawalInput) -> bool:
        """Hold amount and fee. Refused: nothing is held and the request leaves no withdrawal behind
        (the API answers 422)."""
        try:
            self._hold_id = await self._db(PaymentActivities.reserve_withdrawal, w)
        except ActivityError as e:
            reason = policy.failure_reason(e, "the funds could not be held")
            self._status = WithdrawalStatus.FAILED
            self._reason = reason
            await self._db(
                PaymentActivities.discard_withdrawal,
                StatusChange(withdrawal_id=w.withdrawal_id, status=WithdrawalStatus.FAILED, reason=reason),
            )
            self._upsert()
            self._accepted = False
            return False
        self._accepted = True
        return True

    async def _await_approval(self, w: WithdrawalInput) -> bool:
        """Wait for the approvals the rolling 24 h total requires (none: go on). A rejection, the
        customer's cancel or no decision within the timeout releases the hold and ends it."""
        if w.approvals_required <= 0:
            return True
        await self._set(WithdrawalStatus.AWAITING_APPROVAL)
        try:
            await workflow.wait_condition(
                lambda: self._cancelled or self._rejected or len(self._approvals) >= w.approvals_required,
                timeout=timedelta(seconds=w.approval_timeout_seconds),
            )
        except TimeoutError:
            hours = w.approval_timeout_seconds / 3600
            await self._finish(WithdrawalStatus.REJECTED, f"no approval decision within {hours:g} h")
            return False
        async with self._decisions:  # let a decision in flight finish first
            pass
        if self._cancelled:
            await self._finish(WithdrawalStatus.CANCELLED, "cancelled by the customer")
            return False
        if self._rejected:
            await self._finish(WithdrawalStatus.REJECTED, self._reason or "rejected")
            return False
        await self._set(WithdrawalStatus.APPROVED)
        return True

    async def _wait_out_halt(self, w: WithdrawalInput) -> bool:
        """While the currency is halted or the customer's account frozen (services/aml/freeze.py), wait
        (HALTED, asking again every `halt_poll_seconds`); the customer may still cancel, which releases the
        hold and ends it."""
        while True:
            halted = await self._db(
                PaymentActivities.currency_halted, HaltQuery(currency=w.currency, user_id=w.user_id)
            )
            if halted is None or self._cancelled:
                break
            if self._status != WithdrawalStatus.HALTED:
                await self._set(WithdrawalStatus.HALTED, halted)  # the activity words it for the customer
            try:
                await workflow.wait_condition(
                    lambda: self._cancelled, timeout=timedelta(seconds=w.halt_poll_seconds)
                )
            except TimeoutError:
                continue
        if self._cancelled:
            await self._finish(WithdrawalStatus.CANCELLED, "cancelled by the customer")
            return False
        return True

    async def _execute_and_settle(self, w: WithdrawalInput) -> None:
        """Send once, learn the outcome by our id, and book it (commit or release the hold)."""
        await self._set(WithdrawalStatus.PROCESSING)
        outcome = await self._send(w)
        if outcome.status in policy.UNSETTLED:
            outcome = await self._learn_outcome(w, outcome)
        await self._conclude(outcome)

    # --- sending and learning the outcome ---------------------------------------------------

    async def _send(self, w: WithdrawalInput) -> ExecutionOutcome:
        """Send once. Only a send that provably never reached the other side is tried again."""
        outcome = ExecutionOutcome(status="not_sent")
        for attempt in range(max(w.send_attempts, 1)):
            if attempt:
                await workflow.sleep(timedelta(seconds=w.settle_poll_seconds))
            try:
                outcome = await workflow.execute_activity_method(
                    PaymentActivities.send_withdrawal,
                    w,
                    start_to_close_timeout=policy.SEND_TIMEOUT,
                    heartbeat_timeout=policy.CALL_HEARTBEAT,
                    retry_policy=policy.SEND_ONCE,
                )
            except ActivityError as e:  # timed out, worker lost, anything: it may have gone out
                return ExecutionOutcome(status="unknown", reason=f"no answer to the send: {e.message}")
            if outcome.status != "not_sent":
                return outcome
        return ExecutionOutcome(
            status="failed",
            reason=f"the {'bank' if w.provider == 'bank' else 'provider'} could not be reached: "
            f"{outcome.reason}",
        )

    async def _lookup(self, w: WithdrawalInput) -> ExecutionOutcome:
        try:
            return await workflow.execute_activity_method(
                PaymentActivities.settlement_status,
                w,
                start_to_close_timeout=policy.LOOKUP_TIMEOUT,
                heartbeat_timeout=policy.CALL_HEARTBEAT,
                retry_policy=policy.LOOKUP_RETRY,
            )
        except ActivityError as e:
            return ExecutionOutcome(status="unknown", reason=f"the lookup failed: {e.message}")

    async def _learn_outcome(self, w: WithdrawalInput, outcome: ExecutionOutcome) -> ExecutionOutcome:
        """Until the bank/venue says completed or failed (webhook with proof, or our lookups by our id).

        "Absent" and "unknown" are not failure: after `absence_checks` of them in a row, each at least
        `absence_interval_seconds` apart, the withdrawal goes to NEEDS_ATTENTION (hold kept) and the
        lookups go on; ops may resolve it meanwhile."""
        known = outcome
        streak = 0
        while outcome.status not in ("completed", "failed"):
            if outcome.status in ("absent", "unknown"):
                streak += 1
                interval = w.absence_interval_seconds
                if streak >= w.absence_checks and self._status != WithdrawalStatus.NEEDS_ATTENTION:
                    what = "shows no record of it" if outcome.status == "absent" else "gave no answer"
                    await self._needs_attention(
                        f"outcome unknown: the {'bank' if w.provider == 'bank' else w.provider} {what} "
                        f"after {streak} lookups ({outcome.reason})"
                    )
            else:
                streak = 0
                known = outcome
                interval = w.settle_poll_seconds
            try:
                await workflow.wait_condition(
                    lambda: self._payout is not None or self._resolution is not None,
                    timeout=timedelta(seconds=interval),
                )
            except TimeoutError:  # no webhook (yet): ask
                outcome = await self._lookup(w)
                continue
            if self._resolution is not None:
                return self._resolved(known)
            update, self._payout = self._payout, None
            assert update is not None
            if update.status in ("completed", "failed") and await self._payout_proven(update):
                outcome = ExecutionOutcome(
                    status=update.status,
                    provider_ref=update.payout_id or known.provider_ref,
                    reason=update.reason,
                    network_fee=known.network_fee,
                )
        return outcome

    async def _payout_proven(self, update: PayoutUpdate) -> bool:
        return await self._db(
            PaymentActivities.verify_proof,
            ProofCheck(
                withdrawal_id=self._w.withdrawal_id,
                action=f"payout_{update.status}",
                token=update.proof,
                detail=update.payout_id,
            ),
        )

    def _resolved(self, known: ExecutionOutcome) -> ExecutionOutcome:
        r, self._resolution = self._resolution, None
        assert r is not None
        return policy.resolved_outcome(r, known)

    async def _needs_attention(self, reason: str) -> None:
        self._status = WithdrawalStatus.NEEDS_ATTENTION
        self._reason = reason
        self._upsert()
        await self._db(
            PaymentActivities.withdrawal_needs_attention,
            AttentionNotice(withdrawal_id=self._w.withdrawal_id, reason=reason),
        )

    async def _await_resolution(self, reason: str) -> ExecutionOutcome:
        await self._needs_attention(reason)
        await workflow.wait_condition(lambda: self._resolution is not None)
        return self._resolved(ExecutionOutcome(status="unknown"))

    async def _conclude(self, outcome: ExecutionOutcome) -> None:
        """Book the known outcome. Books that cannot be completed wait for ops with the hold kept."""
        while True:
            if outcome.status != "completed":
                if await self._release(WithdrawalStatus.FAILED, outcome.reason or "the payment failed"):
                    return
                outcome = await self._await_resolution(
                    f"the hold could not be released after a failed payout ({outcome.reason})"
                )
                continue
            assert self._hold_id is not None
            try:
                await self._db(
                    PaymentActivities.complete_withdrawal,
                    CompleteInput(
                        withdrawal=self._w,
                        hold_id=self._hold_id,
                        provider_ref=outcome.provider_ref,
                        tx_hash=outcome.tx_hash,
                        network_fee=outcome.network_fee,
                    ),
                )
            except ActivityError as e:
                outcome = await self._await_resolution(
                    f"paid out, but the books could not be completed: {policy.failure_reason(e)}"
                )
                continue
            self._status = WithdrawalStatus.COMPLETED
            self._reason = None
            self._upsert()
            await self._notify()
            return

    async def _db(self, step: Callable[[PaymentActivities, A], Awaitable[R]], arg: A) -> R:
        """A short database step: retried by Temporal until it answers, except a business refusal."""
        return await workflow.execute_activity_method(
            step, arg, start_to_close_timeout=policy.DB_TIMEOUT, retry_policy=policy.DB_RETRY
        )

    def _upsert(self) -> None:
        workflow.upsert_search_attributes([WITHDRAWAL_STATUS.value_set(self._status.value)])

    async def _set(self, status: WithdrawalStatus, reason: str | None = None) -> None:
        self._status = status
        self._reason = reason
        self._upsert()
        await self._db(
            PaymentActivities.mark_withdrawal,
            StatusChange(withdrawal_id=self._w.withdrawal_id, status=status, reason=reason),
        )

    async def _finish(self, status: WithdrawalStatus, reason: str) -> None:
        """Compensation before anything was sent: release the hold in full and record the final status."""
        while not await self._release(status, reason):
            outcome = await self._await_resolution(f"the hold could not be released ({reason})")
            if outcome.status == "completed":  # ops say it was paid after all
                await self._conclude(outcome)
                return

    async def _release(self, status: WithdrawalStatus, reason: str) -> bool:
        """Release the hold and record `status`; False if the ledger refused (the caller asks ops)."""
        try:
            await self._db(
                PaymentActivities.release_withdrawal,
                ReleaseInput(
                    withdrawal_id=self._w.withdrawal_id,
                    hold_id=self._hold_id,
                    status=status,
                    reason=reason,
                ),
            )
        except ActivityError:
            return False
        self._status = status
        self._reason = reason
        self._upsert()
        await self._notify()
        return True

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
                start_to_close_timeout=policy.NOTIFY_TIMEOUT,
                retry_policy=policy.NOTIFY_RETRY,
            )
        except ActivityError:
            workflow.logger.warning("withdrawal %s: the email failed", self._w.withdrawal_id)

"""The float transfer saga (issue 20 item 8): treasury moves crypto float from one venue to another.

`FloatTransferWorkflow` guarantees that a transfer is sent at most once, that the books follow the
money (in flight once the sending venue has sent it, settled once the receiving venue has credited it,
with the venue's network fee), and that a transfer it cannot finish waits in NEEDS_ATTENTION with its
booking visible instead of guessing. Above the currency's limit it waits for two different staff to
approve, each with a decision token the API signed after their TOTP; unapproved in time, nothing moves.
An unknown withdrawal outcome is looked up at the venue, never sent again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.treasury import TreasuryActivities
    from models.treasury import (
        ApprovalCheck,
        FloatTransferInput,
        FloatTransferResult,
        SentBooking,
        SentWithdrawal,
        TransferApproval,
        TransferStatus,
        TransferStep,
    )

STEP = timedelta(seconds=30)
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
SEND_RETRY = RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=5))


def float_transfer_workflow_id(transfer_id: object) -> str:
    return f"float-transfer-{transfer_id}"


@workflow.defn
class FloatTransferWorkflow:
    """One float transfer between two venues, from request to settlement (or a visible NEEDS_ATTENTION)."""

    @workflow.init
    def __init__(self, data: FloatTransferInput) -> None:
        self._pending: list[TransferApproval] = []
        self._approvers = 0

    @workflow.signal
    def approve(self, approval: TransferApproval) -> None:
        self._pending.append(approval)

    @workflow.query
    def approvers(self) -> int:
        return self._approvers

    async def _step(self, method: Any, arg: Any, retry: RetryPolicy = RETRY) -> Any:
        return await workflow.execute_activity_method(
            method,
            arg,
            start_to_close_timeout=STEP,
            retry_policy=retry,
        )

    @workflow.run
    async def run(self, data: FloatTransferInput) -> FloatTransferResult:
        tid = data.transfer_id
        await self._step(TreasuryActivities.record, data)
        if data.approvals_required and not await self._approved(data):
            await self._step(
                TreasuryActivities.reject, TransferStep(transfer_id=tid, detail="not approved in time")
            )
            return FloatTransferResult(transfer_id=tid, status=TransferStatus.REJECTED)
        sent = await self._send(data)
        if isinstance(sent, FloatTransferResult):
            return sent
        await self._step(
            TreasuryActivities.book_sent,
            SentBooking(
                transfer_id=tid, venue_withdrawal_id=sent.venue_withdrawal_id or "",
                tx_hash=sent.tx_hash or "", fee=sent.fee or 0,
            ),
        )  # fmt: skip
        for _ in range(max(data.credit_checks, 1)):
            credit = await self._step(TreasuryActivities.check_credit, TransferStep(transfer_id=tid))
            if getattr(credit, "credited", False):
                await self._step(TreasuryActivities.book_settled, TransferStep(transfer_id=tid))
                return FloatTransferResult(
                    transfer_id=tid, status=TransferStatus.SETTLED, fee=sent.fee, tx_hash=sent.tx_hash
                )
            await workflow.sleep(timedelta(seconds=data.credit_poll_seconds))
        return await self._attention(
            data,
            f"{data.to_venue} has not credited transaction {sent.tx_hash}; the amount is booked in flight",
        )

    async def _approved(self, data: FloatTransferInput) -> bool:
        """Wait for `approvals_required` different staff with valid proof, until the approval timeout."""
        deadline = workflow.now() + timedelta(seconds=data.approval_timeout_seconds)
        while self._approvers < data.approvals_required:
            left = (deadline - workflow.now()).total_seconds()
            if left <= 0:
                return False
            try:
                await workflow.wait_condition(lambda: bool(self._pending), timeout=timedelta(seconds=left))
            except TimeoutError:
                return False
            a = self._pending.pop(0)
            count = await self._step(
                TreasuryActivities.verify_approval,
                ApprovalCheck(transfer_id=data.transfer_id, staff_id=a.staff_id, token=a.token),
            )
            if getattr(count, "valid", False):
                self._approvers = max(self._approvers, int(getattr(count, "approvers", 0)))
        return True

    async def _send(self, data: FloatTransferInput) -> SentWithdrawal | FloatTransferResult:
        """Send once; then ask the venue until its record shows the chain transaction and the fee."""
        tid = data.transfer_id
        out = await self._step(TreasuryActivities.send, TransferStep(transfer_id=tid), SEND_RETRY)
        if getattr(out, "status", "") == "rejected":
            await self._step(
                TreasuryActivities.reject,
                TransferStep(transfer_id=tid, detail=str(getattr(out, "reason", ""))),
            )
            return FloatTransferResult(transfer_id=tid, status=TransferStatus.REJECTED)
        for i in range(max(data.lookup_checks, 1)):
            raw = await self._step(TreasuryActivities.lookup, TransferStep(transfer_id=tid))
            sent = raw if isinstance(raw, SentWithdrawal) else SentWithdrawal.model_validate(raw)
            if sent.status == "unsupported":
                break  # the venue cannot be asked by our id: a person must look
            if sent.found and sent.status == "failed":
                # The venue failed it and returned the funds: nothing moved, nothing booked.
                await self._step(
                    TreasuryActivities.reject,
                    TransferStep(transfer_id=tid, detail="the venue failed the withdrawal"),
                )
                return FloatTransferResult(transfer_id=tid, status=TransferStatus.REJECTED)
            if sent.found and sent.tx_hash and sent.fee is not None:
                return sent
            if i + 1 < data.lookup_checks:
                await workflow.sleep(timedelta(seconds=data.lookup_poll_seconds))
        return await self._attention(
            data, f"the withdrawal at {data.from_venue} is not known yet; it is never sent again"
        )

    async def _attention(self, data: FloatTransferInput, why: str) -> FloatTransferResult:
        await self._step(
            TreasuryActivities.needs_attention, TransferStep(transfer_id=data.transfer_id, detail=why)
        )
        return FloatTransferResult(transfer_id=data.transfer_id, status=TransferStatus.NEEDS_ATTENTION)

"""The float transfer saga (issue 20 item 8): treasury moves crypto float from one venue to another.

`FloatTransferWorkflow` guarantees that a transfer is sent at most once, that the books follow the
money (in flight once the sending venue has sent it, settled once the receiving venue has credited it,
with the venue's network fee), and that a transfer it cannot finish waits in NEEDS_ATTENTION with its
booking visible instead of guessing. Above the currency's limit it waits for two different staff to
approve, each with a decision token the API signed after their TOTP; unapproved in time, nothing moves.
An unknown withdrawal outcome is looked up at the venue, never sent again.

In NEEDS_ATTENTION it goes on asking the venues (every `attention_recheck_seconds`) and takes ops' word
through the `resolve` update (the admin API's `POST /admin/float-transfers/{id}/resolve`): each word
counts only with a decision token signed for that staff member, transfer, outcome and facts after their
TOTP, from an active ops user, and is audited; above the limit two different staff must give the same
word. Ops' "it was not sent" or "it came back" is checked against the venue once more first: a venue
that shows otherwise outweighs anyone's word.
"""

from __future__ import annotations

import uuid
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
        ResolutionCheck,
        ResolutionOutcomeKind,
        SentBooking,
        SentWithdrawal,
        TransferApproval,
        TransferResolution,
        TransferResolutionOutcome,
        TransferStatus,
        TransferStep,
    )

STEP = timedelta(seconds=30)
RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))
SEND_RETRY = RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=5))
# Histories from before the saga waited in NEEDS_ATTENTION for ops ended there; they replay as they ran.
ATTENTION_PATCH = "float-transfer-attention-resolve"


def float_transfer_workflow_id(transfer_id: object) -> str:
    return f"float-transfer-{transfer_id}"


@workflow.defn
class FloatTransferWorkflow:
    """One float transfer between two venues, from request to settlement (or a visible NEEDS_ATTENTION)."""

    @workflow.init
    def __init__(self, data: FloatTransferInput) -> None:
        self._pending: list[TransferApproval] = []
        self._approvers = 0
        self._transfer_id = data.transfer_id
        self._resolvers_required = 2 if data.approvals_required else 1
        self._stage: str | None = None  # in NEEDS_ATTENTION: "send" or "credit", the wait ops can answer
        self._votes: dict[str, set[uuid.UUID]] = {}  # an outcome with its facts -> the staff who gave it
        self._resolved: TransferResolution | None = None
        self._proofs_used: set[str] = set()

    @workflow.query
    def attention(self) -> str | None:
        """The wait ops can answer ("send": the withdrawal's fate unknown; "credit": no credit), or None."""
        return self._stage

    @workflow.update(name="resolve")
    async def resolve(self, resolution: TransferResolution) -> TransferResolutionOutcome:
        """Ops' word on the transfer in NEEDS_ATTENTION; answers whether it counted."""
        stage = self._stage
        outcome = TransferResolutionOutcome.model_validate(
            await self._step(
                TreasuryActivities.verify_resolution,
                ResolutionCheck(
                    transfer_id=self._transfer_id, stage=stage, resolution=resolution,
                    reused=bool(resolution.token) and resolution.token in self._proofs_used,
                ),
            )
        )  # fmt: skip
        if not outcome.accepted:
            return outcome
        if self._stage is None or self._stage != stage or self._resolved is not None:
            return TransferResolutionOutcome(accepted=False, code="not_waiting", detail="resolved meanwhile")
        self._proofs_used.add(resolution.token)
        voters = self._votes.setdefault(resolution.proof_detail, set())
        voters.add(resolution.staff_id)
        if len(voters) >= self._resolvers_required:
            self._resolved = resolution
        return outcome.model_copy(update={"approvers": len(voters), "required": self._resolvers_required})

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
        result = await self._transfer(data)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result

    async def _transfer(self, data: FloatTransferInput) -> FloatTransferResult:
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
            if await self._credited(tid):
                return await self._settle(tid, sent)
            await workflow.sleep(timedelta(seconds=data.credit_poll_seconds))
        answer = await self._attention(
            data,
            f"{data.to_venue} has not credited transaction {sent.tx_hash}; the amount is booked in flight",
            "credit",
        )
        if isinstance(answer, FloatTransferResult):
            return answer
        if answer is True or (
            isinstance(answer, TransferResolution) and answer.outcome is ResolutionOutcomeKind.CREDITED
        ):
            return await self._settle(tid, sent)
        assert isinstance(answer, TransferResolution)
        if await self._credited(tid):  # "returned": a credit the receiving venue shows outweighs it
            return await self._settle(tid, sent)
        await self._step(
            TreasuryActivities.book_returned,
            TransferStep(transfer_id=tid, detail=f"returned to {data.from_venue} (ops: {answer.note})"),
        )
        return FloatTransferResult(
            transfer_id=tid, status=TransferStatus.RETURNED, fee=sent.fee, tx_hash=sent.tx_hash
        )

    async def _credited(self, transfer_id: uuid.UUID) -> bool:
        credit = await self._step(TreasuryActivities.check_credit, TransferStep(transfer_id=transfer_id))
        return bool(getattr(credit, "credited", False))

    async def _settle(self, transfer_id: uuid.UUID, sent: SentWithdrawal) -> FloatTransferResult:
        await self._step(TreasuryActivities.book_settled, TransferStep(transfer_id=transfer_id))
        return FloatTransferResult(
            transfer_id=transfer_id, status=TransferStatus.SETTLED, fee=sent.fee, tx_hash=sent.tx_hash
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
            sent = await self._lookup(tid)
            if sent.status == "unsupported":
                break  # the venue cannot be asked by our id: a person must look
            if sent.found and (sent.status == "failed" or (sent.tx_hash and sent.fee is not None)):
                return await self._known(tid, sent)
            if i + 1 < data.lookup_checks:
                await workflow.sleep(timedelta(seconds=data.lookup_poll_seconds))
        answer = await self._attention(
            data, f"the withdrawal at {data.from_venue} is not known yet; it is never sent again", "send"
        )
        if isinstance(answer, FloatTransferResult):
            return answer
        if isinstance(answer, SentWithdrawal):
            return await self._known(tid, answer)
        assert isinstance(answer, TransferResolution)
        if answer.outcome is ResolutionOutcomeKind.SENT:
            return SentWithdrawal(
                found=True, status="completed", venue_withdrawal_id=answer.venue_withdrawal_id,
                tx_hash=answer.tx_hash, fee=answer.fee,
            )  # fmt: skip
        last = await self._lookup(tid)  # "never sent": one more look first, the venue's record outweighs it
        if last.found and (last.status == "failed" or (last.tx_hash and last.fee is not None)):
            return await self._known(tid, last)
        await self._step(
            TreasuryActivities.reject,
            TransferStep(transfer_id=tid, detail=f"never sent (ops: {answer.note})"),
        )
        return FloatTransferResult(transfer_id=tid, status=TransferStatus.REJECTED)

    async def _lookup(self, transfer_id: uuid.UUID) -> SentWithdrawal:
        raw = await self._step(TreasuryActivities.lookup, TransferStep(transfer_id=transfer_id))
        return raw if isinstance(raw, SentWithdrawal) else SentWithdrawal.model_validate(raw)

    async def _known(
        self, transfer_id: uuid.UUID, sent: SentWithdrawal
    ) -> SentWithdrawal | FloatTransferResult:
        """The sending venue's record: sent (go on), or failed with the funds returned (nothing moved)."""
        if sent.status == "failed":
            await self._step(
                TreasuryActivities.reject,
                TransferStep(transfer_id=transfer_id, detail="the venue failed the withdrawal"),
            )
            return FloatTransferResult(transfer_id=transfer_id, status=TransferStatus.REJECTED)
        return sent

    async def _attention(
        self, data: FloatTransferInput, why: str, stage: str
    ) -> FloatTransferResult | TransferResolution | SentWithdrawal | bool:
        """Park the transfer for ops, then wait for their word while asking the venues again now and then.
        Returns ops' word, or what a venue showed meanwhile (the sending venue's record; True: credited)."""
        await self._step(
            TreasuryActivities.needs_attention, TransferStep(transfer_id=data.transfer_id, detail=why)
        )
        if not workflow.patched(ATTENTION_PATCH):
            return FloatTransferResult(transfer_id=data.transfer_id, status=TransferStatus.NEEDS_ATTENTION)
        self._stage, self._votes, self._resolved = stage, {}, None
        try:
            while True:
                try:
                    await workflow.wait_condition(
                        lambda: self._resolved is not None,
                        timeout=timedelta(seconds=data.attention_recheck_seconds),
                    )
                except TimeoutError:
                    if stage == "credit" and await self._credited(data.transfer_id):
                        return True
                    if stage == "send":
                        sent = await self._lookup(data.transfer_id)
                        if sent.found and (
                            sent.status == "failed" or (sent.tx_hash and sent.fee is not None)
                        ):
                            return sent
                    continue
                assert self._resolved is not None
                workflow.logger.warning(
                    "float transfer %s: resolved by ops (%s): %s", data.transfer_id,
                    ", ".join(sorted(str(v) for v in self._votes.get(self._resolved.proof_detail, ()))),
                    self._resolved.model_dump(exclude={"token"}),
                )  # fmt: skip
                return self._resolved
        finally:
            self._stage = None

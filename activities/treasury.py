"""Float transfer activities: thin, idempotent steps over services/treasury.py and the venue adapters.

Every step is keyed by the transfer id. Sending is the one step with an outside effect: it is asked of
the venue once (a retried activity that finds the venue already asked reports `unknown` and the saga looks
the withdrawal up instead of sending it again).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from config import Settings
from models.treasury import (
    ApprovalCheck,
    ApprovalCount,
    CreditCheck,
    FloatTransferInput,
    ResolutionCheck,
    SendOutcome,
    SentBooking,
    SentWithdrawal,
    TopUpPlan,
    TopUpPlanInput,
    TransferResolutionOutcome,
    TransferStatus,
    TransferStep,
)
from providers.exchanges.base import (
    AmbiguousPlacement,
    ExecutionAdapter,
    RetryableVenueError,
    TerminalVenueError,
    UnsupportedByVenue,
)
from providers.exchanges.ccxt_adapter import CcxtAdapter
from services import treasury
from services.decision_tokens import DecisionTokens, ProofInvalid
from services.ledger import Ledger

log = logging.getLogger("treasury")
APPROVE_DETAIL = "float_transfer"  # binds a decision token to float transfers (not withdrawals)


def _amount(row: dict[str, Any]) -> Decimal:
    amount = row["amount"]
    assert isinstance(amount, Decimal)
    return amount


def _venue_status(status: str) -> str:
    if status == "ok":
        return "completed"
    if status in ("failed", "canceled", "cancelled", "rejected"):
        return "failed"
    return "pending"


class TreasuryActivities:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        adapters: Callable[[], Mapping[str, ExecutionAdapter]],
        ledger: Ledger,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._adapters = adapters
        self._ledger = ledger
        self._tokens = DecisionTokens.from_secret(settings.jwt_secret)

    def _adapter(self, name: str) -> ExecutionAdapter:
        adapter = self._adapters().get(name)
        if adapter is None:
            raise treasury.TransferRefused(f"venue {name} is not configured")
        return adapter

    async def _row(self, transfer_id: uuid.UUID) -> dict[str, Any]:
        row = await treasury.get(self._engine, transfer_id)
        assert row is not None, "the transfer is recorded before any other step"
        return row

    @activity.defn(name="treasury.record")
    async def record(self, data: FloatTransferInput) -> str:
        """Write the transfer (once); returns its status."""
        return await treasury.record(self._engine, data)

    @activity.defn(name="treasury.verify_approval")
    async def verify_approval(self, data: ApprovalCheck) -> ApprovalCount:
        """Count an approval only with a valid decision token for this staff member and transfer."""
        try:
            self._tokens.verify(
                data.token, actor_id=data.staff_id, withdrawal_id=data.transfer_id, action="approve",
                now=datetime.now(UTC), detail=APPROVE_DETAIL,
            )  # fmt: skip
            n = await treasury.add_approval(self._engine, data.transfer_id, data.staff_id)
        except (ProofInvalid, treasury.TransferRefused) as e:
            log.warning("float transfer %s: approval refused: %s", data.transfer_id, e)
            return ApprovalCount(valid=False, problem=str(e))
        return ApprovalCount(valid=True, approvers=n)

    @activity.defn(name="treasury.verify_resolution")
    async def verify_resolution(self, check: ResolutionCheck) -> TransferResolutionOutcome:
        """Count ops' word on a transfer in NEEDS_ATTENTION only with a valid decision token for this staff
        member, transfer, outcome and facts, from an active ops user, answering the wait the saga is in.
        Audited either way."""
        r = check.resolution
        proof_problem = "this proof was used already" if check.reused else ""
        if not proof_problem:
            try:
                self._tokens.verify(
                    r.token, actor_id=r.staff_id, withdrawal_id=check.transfer_id, action=r.action,
                    now=datetime.now(UTC), detail=r.proof_detail,
                )  # fmt: skip
            except ProofInvalid as e:
                proof_problem = str(e)
        code, why = await treasury.audit_resolution(
            self._engine, check.transfer_id, check.stage, r, proof_problem
        )
        if code != "accepted":
            log.warning("float transfer %s: resolution refused: %s: %s", check.transfer_id, code, why)
        return TransferResolutionOutcome(accepted=code == "accepted", code=code, detail=why)

    @activity.defn(name="treasury.book_returned")
    async def book_returned(self, step: TransferStep) -> None:
        """Book the transfer back at the sending venue (transfers:in_flight -> provider:<from>)."""
        row = await self._row(step.transfer_id)
        await treasury.book_returned(
            self._ledger, transfer_id=step.transfer_id, from_venue=str(row["from_venue"]),
            currency=str(row["currency"]), amount=_amount(row),
        )  # fmt: skip
        await treasury.set_status(
            self._engine, step.transfer_id, TransferStatus.RETURNED, attention=step.detail or None
        )

    @activity.defn(name="treasury.send")
    async def send(self, step: TransferStep) -> SendOutcome:
        """Ask the sending venue to withdraw to the receiving venue's deposit address, once."""
        row = await self._row(step.transfer_id)
        if row["status"] == TransferStatus.SENDING.value or row["venue_withdrawal_id"]:
            # Asked before (a retry after a crash or timeout): never send twice; look it up.
            return SendOutcome(status="unknown", venue_withdrawal_id=row["venue_withdrawal_id"])
        currency, amount = str(row["currency"]), row["amount"]
        assert isinstance(amount, Decimal)
        address = (await self._adapter(str(row["to_venue"])).deposit_address(currency)).address
        await treasury.set_status(self._engine, step.transfer_id, TransferStatus.SENDING, address=address)
        try:
            w = await self._adapter(str(row["from_venue"])).withdraw(
                currency, amount, address, treasury.venue_client_id(step.transfer_id)
            )
        except AmbiguousPlacement as e:
            log.warning(
                "float transfer %s: withdrawal outcome unknown: %s", step.transfer_id, type(e).__name__
            )
            return SendOutcome(status="unknown")
        except TerminalVenueError as e:
            await treasury.set_status(self._engine, step.transfer_id, TransferStatus.APPROVED)
            return SendOutcome(status="rejected", reason=f"{type(e).__name__}: {str(e)[:200]}")
        except RetryableVenueError:
            # Never sent (the adapter says so): going back to APPROVED lets the retry send it.
            await treasury.set_status(self._engine, step.transfer_id, TransferStatus.APPROVED)
            raise
        await treasury.set_status(
            self._engine, step.transfer_id, TransferStatus.SENDING, venue_withdrawal_id=w.withdrawal_id
        )
        return SendOutcome(status="sent", venue_withdrawal_id=w.withdrawal_id)

    @activity.defn(name="treasury.lookup")
    async def lookup(self, step: TransferStep) -> SentWithdrawal:
        """The sending venue's record of our withdrawal (by its id, else by our client id)."""
        row = await self._row(step.transfer_id)
        adapter = self._adapter(str(row["from_venue"]))
        currency = str(row["currency"])
        try:
            if row["venue_withdrawal_id"] and isinstance(adapter, CcxtAdapter):
                w = await adapter.withdrawal_by_id(currency, str(row["venue_withdrawal_id"]))
            else:
                w = await adapter.withdrawal_status(currency, treasury.venue_client_id(step.transfer_id))
        except UnsupportedByVenue:
            return SentWithdrawal(found=False, status="unsupported")
        if w is None:
            return SentWithdrawal(found=False)
        if w.withdrawal_id and not row["venue_withdrawal_id"]:
            await treasury.set_status(
                self._engine, step.transfer_id, TransferStatus.SENDING, venue_withdrawal_id=w.withdrawal_id
            )
        return SentWithdrawal(
            found=True, status=_venue_status(w.status), venue_withdrawal_id=w.withdrawal_id,
            tx_hash=w.tx_hash, fee=w.fee,
        )  # fmt: skip

    @activity.defn(name="treasury.book_sent")
    async def book_sent(self, data: SentBooking) -> None:
        """Book the transfer in flight (provider:<from> -> transfers:in_flight, with the network fee)."""
        row = await self._row(data.transfer_id)
        await treasury.set_status(
            self._engine, data.transfer_id, TransferStatus.SENDING,
            venue_withdrawal_id=data.venue_withdrawal_id or row["venue_withdrawal_id"], tx_hash=data.tx_hash,
            fee=data.fee,
        )  # fmt: skip
        amount = row["amount"]
        assert isinstance(amount, Decimal)
        await treasury.book_sent(
            self._ledger, transfer_id=data.transfer_id, from_venue=str(row["from_venue"]),
            currency=str(row["currency"]), amount=amount, fee=data.fee,
        )  # fmt: skip
        await treasury.set_status(self._engine, data.transfer_id, TransferStatus.IN_FLIGHT)

    @activity.defn(name="treasury.check_credit")
    async def check_credit(self, step: TransferStep) -> CreditCheck:
        """Whether the receiving venue has credited the transfer's chain transaction to our omnibus."""
        row = await self._row(step.transfer_id)
        tx = treasury.normal_tx(str(row["tx_hash"]))
        for dep in await self._adapter(str(row["to_venue"])).deposits(str(row["currency"])):
            if treasury.normal_tx(dep.tx_id) == tx and dep.status == "ok":
                return CreditCheck(credited=True)
        return CreditCheck(credited=False)

    @activity.defn(name="treasury.book_settled")
    async def book_settled(self, step: TransferStep) -> None:
        """Book the transfer settled (transfers:in_flight -> provider:<to>)."""
        row = await self._row(step.transfer_id)
        await treasury.book_settled(
            self._ledger, transfer_id=step.transfer_id, to_venue=str(row["to_venue"]),
            currency=str(row["currency"]), amount=_amount(row),
        )  # fmt: skip
        await treasury.set_status(self._engine, step.transfer_id, TransferStatus.SETTLED)

    @activity.defn(name="treasury.needs_attention")
    async def needs_attention(self, step: TransferStep) -> None:
        """Park the transfer for ops: visible in the admin list, audited, alerted; money stays booked."""
        await treasury.set_status(
            self._engine, step.transfer_id, TransferStatus.NEEDS_ATTENTION, attention=step.detail
        )
        log.error("OPS ALERT float transfer %s needs attention: %s", step.transfer_id, step.detail)

    @activity.defn(name="treasury.reject")
    async def reject(self, step: TransferStep) -> None:
        """Close the transfer with nothing moved (refused, never approved, or failed at the venue)."""
        await treasury.set_status(
            self._engine, step.transfer_id, TransferStatus.REJECTED, attention=step.detail
        )

    @activity.defn(name="treasury.plan_top_ups")
    async def plan_top_ups(self, data: TopUpPlanInput) -> TopUpPlan:
        """Transfers that bring each short float back to its target (none for a currency already moving)."""
        balances: dict[str, dict[str, Decimal]] = {}
        for name, adapter in sorted(self._adapters().items()):
            if not isinstance(adapter, CcxtAdapter):
                continue  # the OTC desk holds no crypto float we can withdraw
            balances[name] = {c: (await adapter.balance(c)).free for c in data.thresholds}
        busy = {c for c in data.thresholds if await treasury.open_transfer(self._engine, c)}
        plans = treasury.plan_top_ups(
            balances, short=data.providers, thresholds=data.thresholds, targets=data.targets, busy=busy
        )
        limits = self._settings.float_transfer_approval_limits
        return TopUpPlan(
            transfers=[
                FloatTransferInput(
                    transfer_id=treasury.top_up_id(p.to_venue, p.currency, activity.info().workflow_id or ""),
                    currency=p.currency, from_venue=p.from_venue, to_venue=p.to_venue, amount=p.amount,
                    trigger="float_monitor", reason="float below threshold",
                    approvals_required=treasury.approvals_required(p.currency, p.amount, limits),
                    **self._timing(),
                )
                for p in plans
            ]
        )  # fmt: skip

    def _timing(self) -> dict[str, float | int]:
        s = self._settings
        return {
            "approval_timeout_seconds": s.float_transfer_approval_timeout_seconds,
            "credit_poll_seconds": s.float_transfer_poll_seconds,
            "lookup_poll_seconds": s.float_transfer_poll_seconds,
        }

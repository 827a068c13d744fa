"""Treasury (issue 20 item 8): float transfers between venues, their approvals, and the saga's I/O types.

A `float_transfers` row is one movement of house crypto from one venue's omnibus to another's deposit
address. It is the business record the saga keys everything on (workflow id, venue client id, ledger
references), and what reconciliation reads to explain money on its way between venues.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import CheckConstraint, Column, Numeric, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import timestamp

IN_FLIGHT_ACCOUNT = (
    "transfers:in_flight"  # house account: float sent by one venue, not yet credited by the other
)


class TransferStatus(StrEnum):
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # over the limit: two different staff must approve
    APPROVED = "APPROVED"  # may be sent (not yet asked of the venue)
    SENDING = "SENDING"  # the venue was asked; outcome not known yet
    IN_FLIGHT = "IN_FLIGHT"  # the venue sent it; booked provider:<from> -> transfers:in_flight
    SETTLED = "SETTLED"  # the receiving venue credited it; booked transfers:in_flight -> provider:<to>
    REJECTED = "REJECTED"  # refused by staff, by the venue, or never approved in time: nothing moved
    NEEDS_ATTENTION = "NEEDS_ATTENTION"  # cannot finish on its own; money (and any booking) stays visible
    RETURNED = "RETURNED"  # sent, never credited, and back at the sending venue (ops' word): fee spent


OPEN_STATUSES = ("AWAITING_APPROVAL", "APPROVED", "SENDING", "IN_FLIGHT", "NEEDS_ATTENTION")
_STATUS_SQL = ", ".join(f"'{s.value}'" for s in TransferStatus)


class FloatTransfer(SQLModel, table=True):
    """One float transfer between two venues (the saga's business record)."""

    __tablename__ = "float_transfers"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUS_SQL})", name="ck_float_transfers_status"),
        CheckConstraint("amount > 0", name="ck_float_transfers_amount"),
        CheckConstraint("from_venue <> to_venue", name="ck_float_transfers_venues"),
    )

    id: uuid.UUID = Field(primary_key=True)
    currency: str = Field(max_length=10, index=True)
    from_venue: str = Field(max_length=32)
    to_venue: str = Field(max_length=32)
    amount: Decimal = Field(sa_column=Column(Numeric(36, 18), nullable=False))
    fee: Decimal | None = Field(default=None, sa_column=Column(Numeric(36, 18), nullable=True))
    status: str = Field(max_length=20, index=True)
    approvals_required: int = Field(default=0)
    trigger: str = Field(max_length=64)
    requested_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    reason: str = Field(sa_column=Column(Text, nullable=False))
    address: str | None = Field(default=None, max_length=200)
    venue_withdrawal_id: str | None = Field(default=None, max_length=200)
    tx_hash: str | None = Field(default=None, max_length=200, index=True)
    attention: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class FloatTransferApproval(SQLModel, table=True):
    """One staff member's approval of a transfer over the limit (maker-checker: two different staff)."""

    __tablename__ = "float_transfer_approvals"
    __table_args__ = (UniqueConstraint("transfer_id", "staff_id", name="uq_float_transfer_approvals_staff"),)

    id: uuid.UUID = Field(primary_key=True)
    transfer_id: uuid.UUID = Field(foreign_key="float_transfers.id")
    staff_id: uuid.UUID = Field(foreign_key="users.id")
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


# --- workflow and activity I/O (pydantic; new fields get defaults so histories replay) ------------


class FloatTransferInput(BaseModel):
    transfer_id: uuid.UUID
    currency: str
    from_venue: str
    to_venue: str
    amount: Decimal
    trigger: str = "ops"
    requested_by: uuid.UUID | None = None
    reason: str = ""
    approvals_required: int = 0
    approval_timeout_seconds: float = 72 * 3600
    credit_poll_seconds: float = 10
    credit_checks: int = 360  # how long to wait for the receiving venue's credit before NEEDS_ATTENTION
    lookup_poll_seconds: float = 10
    lookup_checks: int = 30  # lookups of an unknown withdrawal before NEEDS_ATTENTION (never a resend)
    attention_recheck_seconds: float = 600  # in NEEDS_ATTENTION: how often the venues are asked again


class TransferApproval(BaseModel):
    """Signal: a staff member's approval, with the decision token the API signed after their TOTP."""

    staff_id: uuid.UUID
    token: str


class ResolutionOutcomeKind(StrEnum):
    """Ops' word on a transfer in NEEDS_ATTENTION. While the sending venue's answer is unknown: it `sent`
    the withdrawal (with the chain transaction and network fee ops found) or it `not_sent` it (nothing
    moved). While the receiving venue's credit is missing: it was `credited`, or the chain `returned` it
    to the sending venue (the network fee is spent)."""

    SENT = "sent"
    NOT_SENT = "not_sent"
    CREDITED = "credited"
    RETURNED = "returned"


# Which outcomes answer which wait: "send" (the withdrawal unknown), "credit" (the credit missing).
RESOLUTIONS_BY_STAGE = {
    "send": (ResolutionOutcomeKind.SENT, ResolutionOutcomeKind.NOT_SENT),
    "credit": (ResolutionOutcomeKind.CREDITED, ResolutionOutcomeKind.RETURNED),
}


class TransferResolution(BaseModel):
    """Update `resolve`: one staff member's word on a transfer in NEEDS_ATTENTION, with the decision token
    the API signed after their TOTP (bound to the outcome and its facts)."""

    outcome: ResolutionOutcomeKind
    note: str
    staff_id: uuid.UUID
    token: str = ""
    tx_hash: str | None = None  # `sent`: the chain transaction ops found
    fee: Decimal | None = None  # `sent`: the network fee the sending venue charged
    venue_withdrawal_id: str | None = None  # `sent`: the sending venue's id, if ops have it

    @property
    def proof_detail(self) -> str:
        """What the token binds besides the transfer and the action: the outcome and every fact with it."""
        fee = "" if self.fee is None else format(self.fee.normalize(), "f")
        return (
            f"float_transfer:{self.outcome.value}:{self.tx_hash or ''}:{fee}:{self.venue_withdrawal_id or ''}"
        )

    @property
    def action(self) -> str:
        """The decision-token action: money moved (`resolve_paid`) or not (`resolve_not_paid`)."""
        moved = self.outcome in (ResolutionOutcomeKind.SENT, ResolutionOutcomeKind.CREDITED)
        return "resolve_paid" if moved else "resolve_not_paid"


class ResolutionCheck(BaseModel):
    """Verify one resolution (proof, ops role, fits the wait) and audit it either way."""

    transfer_id: uuid.UUID
    stage: str | None  # the wait the saga is in ("send" / "credit"), None: not waiting for ops
    resolution: TransferResolution
    reused: bool = False  # the saga has seen this token before


class TransferResolutionOutcome(BaseModel):
    """The answer to `resolve`: counted or why not; how many staff have given this outcome, of how many."""

    accepted: bool
    code: str  # accepted | unproven | not_ops | not_waiting | wrong_stage | incomplete | same_person
    detail: str = ""
    approvers: int = 0
    required: int = 1


class ApprovalCheck(BaseModel):
    transfer_id: uuid.UUID
    staff_id: uuid.UUID
    token: str


class ApprovalCount(BaseModel):
    valid: bool
    approvers: int = 0
    problem: str | None = None


class TransferStep(BaseModel):
    transfer_id: uuid.UUID
    detail: str = ""


class SentBooking(BaseModel):
    """The sending venue's record, once known: booked as in flight (with its network fee)."""

    transfer_id: uuid.UUID
    venue_withdrawal_id: str
    tx_hash: str
    fee: Decimal


class SendOutcome(BaseModel):
    """What the sending venue says: `sent` (with its id), `rejected` (nothing moved), `unknown`."""

    status: str
    venue_withdrawal_id: str | None = None
    reason: str | None = None


class SentWithdrawal(BaseModel):
    """The sending venue's record of our withdrawal: `found`, its chain tx and network fee when known."""

    found: bool
    status: str = "pending"  # completed | failed | pending
    venue_withdrawal_id: str | None = None
    tx_hash: str | None = None
    fee: Decimal | None = None


class CreditCheck(BaseModel):
    credited: bool


class FloatTransferResult(BaseModel):
    transfer_id: uuid.UUID
    status: TransferStatus
    fee: Decimal | None = None
    tx_hash: str | None = None


class TopUpPlanInput(BaseModel):
    thresholds: dict[str, Decimal]
    targets: dict[str, Decimal]
    providers: list[str]


class TopUpPlan(BaseModel):
    transfers: list[FloatTransferInput] = []

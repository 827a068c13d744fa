"""Manual ledger adjustments by maker-checker (issue 18): a staff member proposes a correction with a
reason, a different staff member approves it with TOTP, and only then is it posted, as a new balanced
journal through the ledger (never an edit of an entry). Rejected proposals are kept.

The table holds the proposal and its one decision; the money is only in the ledger, under
`reference_type = 'adjustment'` and `reference_id = <proposal id>`. Four eyes is enforced by the service
and again by a CHECK here (the checker is never the maker).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic import Field as PField
from sqlalchemy import CheckConstraint, Column, Index, Text
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp

SIGNED_DECIMAL_PATTERN = r"^-?[0-9]{1,18}(\.[0-9]{1,18})?$"
SignedDecimalStr = Annotated[
    str,
    PField(
        pattern=SIGNED_DECIMAL_PATTERN,
        max_length=38,
        description="A signed decimal as a string: positive credits the account, negative debits it.",
    ),
]


class AdjustmentStatus(StrEnum):
    PROPOSED = "PROPOSED"
    POSTED = "POSTED"
    REJECTED = "REJECTED"


class LedgerAdjustment(SQLModel, table=True):
    """One proposal and its decision. `legs` is the list of `AdjustmentLeg` as JSON (amounts as strings)."""

    __tablename__ = "ledger_adjustments"
    __table_args__ = (
        CheckConstraint("status IN ('PROPOSED', 'POSTED', 'REJECTED')", name="ck_ledger_adjustments_status"),
        CheckConstraint(
            "checker_id IS NULL OR checker_id <> maker_id", name="ck_ledger_adjustments_four_eyes"
        ),
        CheckConstraint(
            "(status = 'PROPOSED') = (checker_id IS NULL AND decided_at IS NULL)",
            name="ck_ledger_adjustments_decided",
        ),
        CheckConstraint(
            "(status = 'POSTED') = (transaction_id IS NOT NULL)", name="ck_ledger_adjustments_posted"
        ),
        Index("ix_ledger_adjustments_status_created", "status", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    currency: str = Field(max_length=10, foreign_key="currencies.code")
    legs: list[dict[str, Any]] = Field(sa_column=jsonb(nullable=False))
    reason: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(
        default=AdjustmentStatus.PROPOSED, max_length=10, sa_column_kwargs={"server_default": "PROPOSED"}
    )
    maker_id: uuid.UUID = Field(foreign_key="users.id")
    checker_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    decision_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    transaction_id: uuid.UUID | None = Field(default=None, foreign_key="ledger_transactions.id")
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    decided_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


# --- API bodies -----------------------------------------------------------------------------------


class AdjustmentLeg(BaseModel):
    """One account and its signed amount: a customer's account (`user_id`) or a house account (`house`)
    in the proposal's currency."""

    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID | None = None
    house: str | None = PField(default=None, max_length=100, examples=["suspense"])
    amount: SignedDecimalStr

    @model_validator(mode="after")
    def _one_account(self) -> AdjustmentLeg:
        if (self.user_id is None) == (self.house is None):
            raise ValueError("name exactly one of user_id or house")
        return self


class AdjustmentProposalIn(BaseModel):
    """`POST /admin/adjustments`: the correction to make. `id` (optional) makes a repeat of the same
    proposal return the first one instead of proposing it twice."""

    model_config = ConfigDict(extra="forbid")

    id: uuid.UUID | None = None
    currency: str = PField(max_length=10, examples=["GBP"])
    legs: list[AdjustmentLeg] = PField(min_length=2, max_length=10)
    reason: str = PField(min_length=5, max_length=2000)


class AdjustmentDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = PField(min_length=1, max_length=2000)


class AdjustmentOut(BaseModel):
    id: uuid.UUID
    currency: str
    legs: list[AdjustmentLeg]
    reason: str
    status: AdjustmentStatus
    maker_id: uuid.UUID
    checker_id: uuid.UUID | None
    decision_reason: str | None
    transaction_id: uuid.UUID | None
    created_at: datetime
    decided_at: datetime | None
    maker_email: str | None = None  # filled in lists, for the people reading them
    checker_email: str | None = None

"""What compliance adds to an AML case (issue 16 items 3–5): notes, linked transactions, suspicious
activity reports with their DAML consent request, and customer freezes.

Internal records: nothing here is ever shown to the customer (no tipping off). A note is append-only (a
trigger refuses UPDATE and DELETE), so the case file is the history of what was known when. A freeze is
lifted only by two different compliance users: the first asks (`unfreeze_requested_by`), a second one
lifts it (`lifted_by`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, Text
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp

# What a case may link (the subject kinds of alerts, without the customer).
LINKED_KINDS = ("withdrawal", "deposit", "trade", "order")
# A DAML request's state: waiting for the NCA, consent (given or deemed), refused (moratorium running).
DAML_STATES = ("none", "awaiting_consent", "consented", "refused", "moratorium_ended", "declined")


class AmlCaseNote(SQLModel, table=True):
    """One entry in a case's file: who wrote what, when. Never edited or removed."""

    __tablename__ = "aml_case_notes"
    __table_args__ = (Index("ix_aml_case_notes_case_created", "case_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(foreign_key="aml_cases.id")
    author_id: uuid.UUID = Field(foreign_key="users.id")
    body: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class AmlCaseTransaction(SQLModel, table=True):
    """A transaction compliance linked to the case by hand (alerts link their own subjects)."""

    __tablename__ = "aml_case_transactions"
    __table_args__ = (
        CheckConstraint(
            f"kind IN ({', '.join(repr(k) for k in LINKED_KINDS)})", name="ck_aml_case_transactions_kind"
        ),
    )

    case_id: uuid.UUID = Field(foreign_key="aml_cases.id", primary_key=True)
    kind: str = Field(max_length=16, primary_key=True)
    transaction_id: uuid.UUID = Field(primary_key=True)
    linked_by: uuid.UUID = Field(foreign_key="users.id")
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class AmlSarReport(SQLModel, table=True):
    """A suspicious activity report filed with the NCA for a case, and its DAML consent request when the
    case holds a transaction awaiting consent. The deadlines are computed once, when the request is made
    and when a refusal arrives (services/aml/sar_deadlines.py)."""

    __tablename__ = "aml_sar_reports"
    __table_args__ = (
        CheckConstraint(
            f"daml_state IN ({', '.join(repr(s) for s in DAML_STATES)})", name="ck_aml_sar_reports_daml_state"
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    case_id: uuid.UUID = Field(foreign_key="aml_cases.id", unique=True)
    nca_reference: str = Field(max_length=64)
    narrative: str = Field(sa_column=Column(Text, nullable=False))
    # Metadata only (name, media type, size, sha256): the files live in the document store.
    attachments: list[dict[str, Any]] = Field(default_factory=list, sa_column=jsonb(nullable=False))
    filed_by: uuid.UUID = Field(foreign_key="users.id")
    filed_at: datetime | None = Field(default=None, sa_column=timestamp())
    daml_state: str = Field(default="none", max_length=20, sa_column_kwargs={"server_default": "none"})
    daml_withdrawal_id: uuid.UUID | None = Field(default=None, foreign_key="withdrawals.id")
    notice_ends_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    refused_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    moratorium_ends_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class AmlFreeze(SQLModel, table=True):
    """A customer's account frozen by compliance: no trading, withdrawals wait with their hold, deposits
    are still credited. At most one active (not lifted) freeze per customer."""

    __tablename__ = "aml_freezes"
    __table_args__ = (
        Index("uq_aml_freezes_active_per_user", "user_id", unique=True, postgresql_where="lifted_at IS NULL"),
        CheckConstraint(
            "lifted_by IS NULL OR (unfreeze_requested_by IS NOT NULL AND lifted_by <> unfreeze_requested_by)",
            name="ck_aml_freezes_two_people",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    case_id: uuid.UUID | None = Field(default=None, foreign_key="aml_cases.id")
    reason: str = Field(sa_column=Column(Text, nullable=False))
    frozen_by: uuid.UUID = Field(foreign_key="users.id")
    frozen_at: datetime | None = Field(default=None, sa_column=timestamp())
    unfreeze_requested_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    unfreeze_requested_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, now=False)
    )
    lifted_by: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    lifted_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))

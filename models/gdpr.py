"""GDPR (docs/architecture.md §11): subject-access exports and account closures with their retention.

A `GdprExportRequest` is one customer's request for their data: it must be answered within one calendar
month (`due_at`, UK GDPR Art. 12(3)); `REQUESTED` past `due_at` is overdue and ops see it. The zip is kept
in the row (`content`, so the API and the workers need no shared disk, and READY and the file are written
together) until its link expires; then it is erased and the request is `EXPIRED`.

An `AccountClosure` records when the business relationship ended: personal data is kept for five years
after it (MLR 2017 reg. 40) and then pseudonymised (`pseudonymised_at`); the ledger is never touched.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel
from sqlalchemy import CheckConstraint, Column, ForeignKey, Index, LargeBinary, String, Uuid, text
from sqlmodel import Field, SQLModel

from models.columns import timestamp


class ExportStatus(StrEnum):
    REQUESTED = "REQUESTED"  # the saga is building it; overdue once past `due_at`
    READY = "READY"  # built and its link emailed; downloadable until `expires_at`
    EXPIRED = "EXPIRED"  # the link ran out and the file was deleted


OPEN_EXPORT_STATUSES = (ExportStatus.REQUESTED.value,)


class GdprExportRequest(SQLModel, table=True):
    """One subject-access request. At most one `REQUESTED` per customer: a repeat joins it."""

    __tablename__ = "gdpr_export_requests"
    __table_args__ = (
        CheckConstraint("status IN ('REQUESTED', 'READY', 'EXPIRED')", name="ck_gdpr_export_requests_status"),
        Index(
            "uq_gdpr_export_requests_open",
            "user_id",
            unique=True,
            postgresql_where=text("status = 'REQUESTED'"),
        ),
        Index("ix_gdpr_export_requests_user_created", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), nullable=False))
    status: str = Field(
        default=ExportStatus.REQUESTED, max_length=12, sa_column_kwargs={"server_default": "REQUESTED"}
    )
    due_at: datetime = Field(sa_column=timestamp(now=False))
    ready_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    expires_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    emailed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    content: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))  # the zip
    sha256: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    size_bytes: int | None = None
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class AccountClosure(SQLModel, table=True):
    """A closed account: when it closed, when its personal data is due to go, and when it went."""

    __tablename__ = "account_closures"

    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), primary_key=True))
    closed_at: datetime = Field(sa_column=timestamp(now=False))
    purge_due_at: datetime = Field(sa_column=timestamp(now=False))
    pseudonymised_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


# --- API schemas --------------------------------------------------------------------------------------


class ExportRequestOut(BaseModel):
    id: uuid.UUID
    status: str
    requested_at: datetime
    due_at: datetime
    ready_at: datetime | None = None
    expires_at: datetime | None = None
    workflow_id: str


class OverdueExport(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    requested_at: datetime
    due_at: datetime
    workflow_id: str


class ClosureOut(BaseModel):
    status: str
    closed_at: datetime
    personal_data_kept_until: datetime
    workflow_id: str


# --- workflow and activity I/O ---------------------------------------------------------------------------


class ExportInput(BaseModel):
    request_id: uuid.UUID
    user_id: uuid.UUID


class ExportBuilt(BaseModel):
    request_id: uuid.UUID
    expires_at: datetime
    sha256: str = ""
    size_bytes: int = 0
    # How long the saga keeps the file: a duration, so its timer does not compare our clock with Temporal's.
    link_seconds: float = 0.0


class ExportResult(BaseModel):
    request_id: uuid.UUID
    status: str


class RetentionInput(BaseModel):
    user_id: uuid.UUID
    purge_at: datetime


class RetentionCheck(BaseModel):
    """What the retention saga should do now: nothing (`due_at` None: no closure to keep), wait until
    `due_at`, or purge (`due_at` reached)."""

    user_id: uuid.UUID
    due_at: datetime | None = None
    already_pseudonymised: bool = False


class PurgeInput(BaseModel):
    """`as_of` is the saga's clock (Temporal's), so the due date is judged by the timer that fired."""

    user_id: uuid.UUID
    as_of: datetime


class RetentionResult(BaseModel):
    user_id: uuid.UUID
    pseudonymised: bool
    rows_changed: int = 0


def export_workflow_id(request_id: uuid.UUID) -> str:
    return f"gdpr-export-{request_id}"


def retention_workflow_id(user_id: uuid.UUID) -> str:
    return f"gdpr-retention-{user_id}"

"""KYC submissions, AML checks, reconciliation runs (the append-only audit log, re-exported here, lives in
`models/audit.py`) (docs/architecture.md §C.5,
§C.6, §7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Column, Index, LargeBinary, String, text
from sqlmodel import Field, SQLModel

from models.audit import AuditLog as AuditLog  # re-exported: its historic import path
from models.columns import jsonb, money, timestamp

KYC_STATUSES = (
    "DRAFT", "PENDING", "VENDOR_CHECK", "RESUBMIT_REQUESTED", "IN_REVIEW", "APPROVED", "REJECTED", "EXPIRED",
)  # fmt: skip
KYC_OPEN_STATUSES = ("DRAFT", "PENDING", "VENDOR_CHECK", "RESUBMIT_REQUESTED", "IN_REVIEW")


class KycSubmission(SQLModel, table=True):
    """One request for a KYC tier and its saga's state (0017: states, details, one open per tier)."""

    __tablename__ = "kyc_submissions"
    __table_args__ = (
        CheckConstraint("tier BETWEEN 1 AND 3", name="ck_kyc_submissions_tier"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in KYC_STATUSES) + ")", name="ck_kyc_submissions_status"
        ),
        Index(
            "uq_kyc_submissions_open",
            "user_id",
            "tier",
            unique=True,
            postgresql_where=text("status IN (" + ", ".join(f"'{s}'" for s in KYC_OPEN_STATUSES) + ")"),
        ),
        Index("ix_kyc_submissions_applicant", "provider_applicant_id"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    tier: int
    status: str = Field(default="PENDING", max_length=20, sa_column_kwargs={"server_default": "PENDING"})
    provider: str | None = Field(default=None, max_length=50)
    provider_applicant_id: str | None = Field(default=None, max_length=100)
    document_front_url: str | None = None
    document_back_url: str | None = None
    selfie_url: str | None = None
    rejection_reason: str | None = None
    reviewed_by: uuid.UUID | None = None
    reviewed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    vendor_result: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class KycVendorEvent(SQLModel, table=True):
    """A verified vendor webhook, once per raw body (its SHA-256): redeliveries are acknowledged only."""

    __tablename__ = "kyc_vendor_events"

    digest: str = Field(sa_column=Column(String(64), primary_key=True))
    applicant_id: str = Field(max_length=100)
    type: str = Field(max_length=50)
    submission_id: uuid.UUID | None = Field(default=None, foreign_key="kyc_submissions.id")
    body: dict[str, Any] = Field(sa_column=jsonb(nullable=False))
    signalled_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class KycEvidence(SQLModel, table=True):
    """A tier-3 source-of-funds evidence file, kept for compliance's review."""

    __tablename__ = "kyc_evidence"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    submission_id: uuid.UUID = Field(foreign_key="kyc_submissions.id", index=True)
    filename: str = Field(max_length=200)
    content_type: str = Field(max_length=100)
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class AmlCheck(SQLModel, table=True):
    __tablename__ = "aml_checks"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    check_type: str | None = Field(default=None, max_length=50)
    provider: str | None = Field(default=None, max_length=50)
    result: str | None = Field(default=None, max_length=20)
    risk_score: int | None = None
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class ReconciliationRun(SQLModel, table=True):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (
        Index("ix_reconciliation_runs_currency_created", "currency", "created_at"),
        Index("ix_reconciliation_runs_run_id", "run_id"),
        Index("uq_reconciliation_runs_run_currency", "run_id", "currency", unique=True),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    currency: str = Field(max_length=10)
    provider_balance: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    on_chain_balance: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    ledger_balance: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    discrepancy: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    status: str | None = Field(default=None, max_length=20)
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    # Migration 0015: the run (one row per currency per run), its cut-off and what explained the drift.
    run_id: uuid.UUID | None = None
    cut_off: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    in_flight: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    customer_liabilities: Decimal | None = Field(default=None, sa_column=money(nullable=True))

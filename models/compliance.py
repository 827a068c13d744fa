"""KYC submissions, AML checks, reconciliation runs and the append-only audit log (seed §C.5, §C.6, §7)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Index
from sqlmodel import Field, SQLModel

from models.columns import jsonb, money, timestamp


class KycSubmission(SQLModel, table=True):
    __tablename__ = "kyc_submissions"
    __table_args__ = (
        CheckConstraint("tier BETWEEN 1 AND 3", name="ck_kyc_submissions_tier"),
        CheckConstraint("status IN ('PENDING', 'APPROVED', 'REJECTED')", name="ck_kyc_submissions_status"),
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


class AuditLog(SQLModel, table=True):
    """Who did what to what. Append-only: the database refuses UPDATE and DELETE."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_target", "target_type", "target_id"),
        Index("ix_audit_log_actor_created", "actor_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    actor_id: uuid.UUID | None = None
    actor_type: str = Field(default="system", max_length=20, sa_column_kwargs={"server_default": "system"})
    action: str = Field(max_length=100)
    target_type: str | None = Field(default=None, max_length=50)
    target_id: str | None = Field(default=None, max_length=100)
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())

"""AML transaction monitoring (issue 16): rule set versions, the alerts they raise and the cases that
group a customer's alerts.

A rule set version is data (`config/aml/*.json` seeds the first one). A published version is immutable:
a change is a new version, so every alert names exactly the rules that raised it. A version runs `live`
(its alerts open cases and its outcome can hold a withdrawal) or in `shadow` (its alerts are recorded with
`shadow = true` next to the live ones and do nothing else).

An alert is one rule's hit on one subject (a withdrawal, a deposit, a trade, or the customer for the
scheduled window rules). The unique key (version, rule, subject) makes evaluation idempotent: a retried
activity or a re-run sweep raises nothing twice. `details` is internal evidence for compliance and is never
shown to a customer (no tipping off).

Retention (MLR 2017 reg. 40): `retention_until` is five years after the business relationship ends; it is
NULL while the customer is a customer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import CheckConstraint, Column, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp


class RuleVersionStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    RETIRED = "retired"


class RuleVersionMode(StrEnum):
    LIVE = "live"
    SHADOW = "shadow"


class AmlOutcome(StrEnum):
    """What an evaluation's summed score means for the subject, mildest first."""

    APPROVE = "approve"
    REVIEW = "review"
    BLOCK_AND_REVIEW = "block_and_review"
    DECLINE = "decline"


class AmlSubjectType(StrEnum):
    WITHDRAWAL = "withdrawal"
    DEPOSIT = "deposit"
    TRADE = "trade"
    CUSTOMER = "customer"


class AmlCaseStatus(StrEnum):
    PENDING = "pending"
    INVESTIGATING = "investigating"
    CLOSED = "closed"


class AmlCaseOutcome(StrEnum):
    FALSE_POSITIVE = "false_positive"
    VALUABLE_ALERT = "valuable_alert"
    CONFIRMED_RISK = "confirmed_risk"


def _in(column: str, enum: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(m.value) for m in enum)})"


class AmlRuleVersion(SQLModel, table=True):
    """One version of the rule set. `rules` holds the rules and the outcome thresholds (see
    `services/aml/rules.py` for its shape)."""

    __tablename__ = "aml_rule_versions"
    __table_args__ = (
        CheckConstraint(_in("status", RuleVersionStatus), name="ck_aml_rule_versions_status"),
        CheckConstraint(_in("mode", RuleVersionMode), name="ck_aml_rule_versions_mode"),
        # At most one live version decides; shadow versions run next to it.
        Index(
            "uq_aml_rule_versions_one_live",
            "mode",
            unique=True,
            postgresql_where="status = 'published' AND mode = 'live'",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    version: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    status: str = Field(default=RuleVersionStatus.DRAFT, max_length=16)
    mode: str = Field(default=RuleVersionMode.LIVE, max_length=16)
    published_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    rules: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb(nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class AmlCase(SQLModel, table=True):
    """A customer's alerts under investigation. At most one case per customer is open (pending or
    investigating) at a time; new live alerts join it."""

    __tablename__ = "aml_cases"
    __table_args__ = (
        CheckConstraint(_in("status", AmlCaseStatus), name="ck_aml_cases_status"),
        CheckConstraint(f"outcome IS NULL OR {_in('outcome', AmlCaseOutcome)}", name="ck_aml_cases_outcome"),
        # One open case per customer: two concurrent evaluations cannot open two.
        Index(
            "uq_aml_cases_open_per_user",
            "user_id",
            unique=True,
            postgresql_where="status IN ('pending', 'investigating')",
        ),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    status: str = Field(default=AmlCaseStatus.PENDING, max_length=16)
    outcome: str | None = Field(default=None, max_length=32)
    assignee_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    due_at: datetime = Field(sa_column=timestamp(now=False))
    opened_at: datetime | None = Field(default=None, sa_column=timestamp())
    closed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    retention_until: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    workflow_id: str | None = Field(default=None, max_length=100)


class AmlAlert(SQLModel, table=True):
    """One rule's hit on one subject under one rule set version."""

    __tablename__ = "aml_alerts"
    __table_args__ = (
        UniqueConstraint(
            "rule_version_id", "rule_code", "subject_type", "subject_id", name="uq_aml_alerts_subject"
        ),
        CheckConstraint(_in("subject_type", AmlSubjectType), name="ck_aml_alerts_subject_type"),
        CheckConstraint(_in("outcome", AmlOutcome), name="ck_aml_alerts_outcome"),
        Index("ix_aml_alerts_user_created", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    rule_version_id: uuid.UUID = Field(foreign_key="aml_rule_versions.id")
    rule_code: str = Field(max_length=64)
    score: int
    # The evaluation's outcome for the subject (summed over every rule that hit it).
    outcome: str = Field(max_length=32)
    subject_type: str = Field(max_length=16)
    subject_id: str = Field(max_length=100)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb(nullable=False))
    shadow: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    case_id: uuid.UUID | None = Field(default=None, foreign_key="aml_cases.id", index=True)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    retention_until: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class RuleHit(BaseModel):
    """One rule that fired in an evaluation, with its evidence (internal only)."""

    rule_code: str
    score: int
    details: dict[str, Any] = PField(default_factory=dict)


# --- workflow and activity I/O (pydantic; new fields get defaults so histories replay) ------------


class ScreenRequest(BaseModel):
    """Screen one transaction: a withdrawal (before the money leaves), a credited deposit, or an order's
    settled trades (`subject_id` is the order id)."""

    subject_type: AmlSubjectType
    subject_id: str


class ScreenAnswer(BaseModel):
    """The live rule set's outcome for the subject. Internal: never shown to the customer."""

    outcome: AmlOutcome = AmlOutcome.APPROVE
    score: int = 0
    rules: list[str] = PField(default_factory=list)
    case_id: uuid.UUID | None = None


class ComplianceDecision(BaseModel):
    """Compliance's word on a withdrawal held for review: what signal `compliance_decision` carries.

    `token` is a decision token (services/decision_tokens.py) for action `aml_clear` or `aml_decline` on
    this withdrawal; the staff user is the token's subject (`staff_id`, when given, must be the same)."""

    decision: str  # "clear" | "decline"
    token: str = ""
    staff_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None


class ComplianceProofCheck(BaseModel):
    withdrawal_id: uuid.UUID
    decision: str
    token: str = ""
    staff_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None


class SweepInput(BaseModel):
    """One scheduled sweep of the window rules over every customer (`at` None: now)."""

    at: datetime | None = None


class SweepResult(BaseModel):
    customers: int = 0
    alerts: int = 0

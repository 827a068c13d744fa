"""The FCA PS23/6 gates a customer passes before a first cryptoasset trade: tables, API shapes, saga I/O.

`first_trade_gates` holds one row per customer with where each gate stands; `appropriateness_attempts`
keeps every attempt at the appropriateness assessment (answers, score, result), because a failed attempt
locks the next one for 24 hours and compliance must be able to show what was asked and answered.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import Boolean, CheckConstraint, Column, Integer, String
from sqlmodel import Field, SQLModel

from models.columns import jsonb, timestamp


class ClientCategory(StrEnum):
    """COBS 4.12A: who may be shown a direct offer of a restricted mass-market investment."""

    RESTRICTED = "restricted"
    HIGH_NET_WORTH = "high_net_worth"
    SOPHISTICATED = "sophisticated"  # self-certified


class Gate(StrEnum):
    """The gates, in the order a customer meets them; each refusal names one (`gate_<name>`)."""

    RISK_WARNING = "risk_warning"
    COOLING_OFF = "cooling_off"
    CATEGORISATION = "categorisation"
    APPROPRIATENESS = "appropriateness"


class FirstTradeGates(SQLModel, table=True):
    """Where one customer stands on each gate. No row: nothing done yet."""

    __tablename__ = "first_trade_gates"
    __table_args__ = (
        CheckConstraint(
            "category IS NULL OR category IN ('restricted', 'high_net_worth', 'sophisticated')",
            name="ck_first_trade_gates_category",
        ),
    )

    user_id: uuid.UUID = Field(foreign_key="users.id", primary_key=True)
    risk_warning_version: str | None = Field(default=None, sa_column=Column(String(32), nullable=True))
    risk_warning_acknowledged_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, now=False)
    )
    cooling_off_started_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, now=False)
    )
    cooling_off_ends_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    # Set only by the cooling-off saga when its durable timer fires (workflows/first_trade.py).
    cooling_off_completed_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, now=False)
    )
    category: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    declaration: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    categorised_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    assessment_passed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    assessment_locked_until: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, now=False)
    )
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class AppropriatenessAttempt(SQLModel, table=True):
    """One submitted appropriateness assessment, kept whatever its result."""

    __tablename__ = "appropriateness_attempts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    questionnaire_version: str = Field(sa_column=Column(String(32), nullable=False))
    answers: dict[str, Any] = Field(sa_column=jsonb(nullable=False))
    correct: int = Field(sa_column=Column(Integer, nullable=False))
    total: int = Field(sa_column=Column(Integer, nullable=False))
    missed_fundamental: bool = Field(sa_column=Column(Boolean, nullable=False))
    passed: bool = Field(sa_column=Column(Boolean, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


# --- API shapes -----------------------------------------------------------------------------------


class GateStatus(BaseModel):
    """One gate as the customer sees it: its state and what is still needed."""

    gate: Gate
    state: str  # "done", "needed", "waiting" (cooling off or locked after a failed attempt)
    needed: str | None = None
    until: datetime | None = None


class RiskWarning(BaseModel):
    version: str
    text: str
    acknowledged_at: datetime | None = None


class RiskWarningAck(BaseModel):
    version: str = PField(min_length=1, max_length=32)


class Categorisation(BaseModel):
    """The customer's category and the signed declaration it rests on (fields per category, see
    `services.first_trade_gates.DECLARATIONS`)."""

    category: ClientCategory
    declaration: dict[str, Any] = PField(default_factory=dict)


class CategorisationOut(BaseModel):
    category: ClientCategory
    categorised_at: datetime


class QuestionOption(BaseModel):
    id: str
    text: str


class Question(BaseModel):
    id: str
    text: str
    options: list[QuestionOption]


class Questionnaire(BaseModel):
    version: str
    questions: list[Question]


class AssessmentAnswers(BaseModel):
    version: str = PField(min_length=1, max_length=32)
    answers: dict[str, str]


class AssessmentResult(BaseModel):
    """A failed attempt says that it failed and when the next may be made; never which answers were
    wrong (the assessment must not turn into answering until right)."""

    passed: bool
    retry_after: datetime | None = None


# --- workflow and activity I/O (pydantic; new fields get defaults so histories replay) ------------


class CoolingOffInput(BaseModel):
    user_id: uuid.UUID
    seconds: float


class CoolingOffResult(BaseModel):
    user_id: uuid.UUID
    completed: bool = True

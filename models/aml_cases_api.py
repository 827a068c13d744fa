"""Bodies of the compliance endpoints over AML cases (api/routes/admin_aml.py), and the I/O of the SAR
workflow (workflows/sar.py). Staff only: a customer never sees any of these (no tipping off)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

CaseOutcome = Literal["false_positive", "valuable_alert", "confirmed_risk"]
LinkKind = Literal["withdrawal", "deposit", "trade", "order"]


class CaseSummary(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    status: str
    outcome: str | None
    assignee_id: uuid.UUID | None
    due_at: datetime
    opened_at: datetime
    closed_at: datetime | None
    alert_count: int
    score: int = Field(description="the summed score of the case's alerts")
    workflow_id: str = Field(description="the SAR workflow (sar-<case id>)")


class CasePage(BaseModel):
    cases: list[CaseSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


class CaseAlert(BaseModel):
    id: uuid.UUID
    rule_code: str
    score: int
    outcome: str
    subject_type: str
    subject_id: str
    details: dict[str, Any]
    created_at: datetime


class CaseNote(BaseModel):
    id: uuid.UUID
    author_id: uuid.UUID
    body: str
    created_at: datetime


class LinkedTransaction(BaseModel):
    kind: str
    transaction_id: str
    source: Literal["alert", "staff"]


class SarSummary(BaseModel):
    nca_reference: str
    narrative: str
    attachments: list[dict[str, Any]]
    filed_by: uuid.UUID
    filed_at: datetime
    daml_state: str
    daml_withdrawal_id: uuid.UUID | None
    notice_ends_at: datetime | None
    refused_at: datetime | None
    moratorium_ends_at: datetime | None


class CaseDetail(CaseSummary):
    alerts: list[CaseAlert]
    notes: list[CaseNote]
    transactions: list[LinkedTransaction]
    sar: SarSummary | None
    frozen: bool


class AssignBody(BaseModel):
    assignee_id: uuid.UUID = Field(description="a staff user with the compliance role")


class NoteBody(BaseModel):
    body: str = Field(min_length=1, max_length=10_000, pattern=r"\S")


class LinkBody(BaseModel):
    kind: LinkKind
    transaction_id: uuid.UUID


class CloseBody(BaseModel):
    outcome: CaseOutcome
    note: str = Field(min_length=1, max_length=10_000, pattern=r"\S", description="why (goes into the notes)")


class AttachmentMeta(BaseModel):
    """What is kept of an attachment sent with the SAR (the file itself lives in the document store)."""

    name: str = Field(min_length=1, max_length=255)
    media_type: str = Field(min_length=1, max_length=100)
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class SarBody(BaseModel):
    nca_reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9/_-]+$")
    narrative: str = Field(min_length=1, max_length=50_000, pattern=r"\S")
    attachments: list[AttachmentMeta] = Field(default_factory=list, max_length=50)
    daml_withdrawal_id: uuid.UUID | None = Field(
        default=None, description="a held withdrawal of the case the report asks consent (DAML) for"
    )


class DecisionBody(BaseModel):
    reason: str = Field(min_length=1, max_length=2_000, pattern=r"\S")


class FreezeOut(BaseModel):
    user_id: uuid.UUID
    frozen: bool
    frozen_by: uuid.UUID | None
    unfreeze_requested_by: uuid.UUID | None
    lifted_by: uuid.UUID | None


class SarDecisionOut(BaseModel):
    """Whether the SAR workflow took the decision, and the case's state after it."""

    accepted: bool
    code: str
    detail: str = ""
    stage: str


# --- the SAR workflow's I/O (pydantic, never table rows; new fields get defaults) ------------------

SarDecisionKind = Literal["clear", "decline", "file_sar", "freeze", "nca_refused", "nca_consented"]


class SarInput(BaseModel):
    case_id: uuid.UUID
    user_id: uuid.UUID


class SarDecision(BaseModel):
    """A compliance officer's decision on the case, with the token proving it (services/decision_tokens:
    subject the case, action `aml_case_<kind>`, detail the NCA reference for file_sar)."""

    kind: SarDecisionKind
    staff_id: uuid.UUID
    token: str
    reason: str = ""
    nca_reference: str = ""
    narrative: str = ""
    attachments: list[dict[str, Any]] = Field(default_factory=list)
    daml_withdrawal_id: uuid.UUID | None = None


class SarProofCheck(BaseModel):
    case_id: uuid.UUID
    decision: SarDecision


class SarFiling(BaseModel):
    case_id: uuid.UUID
    decision: SarDecision
    requested_at: datetime  # the workflow's clock: the DAML notice period counts from here


class WithdrawalRelease(BaseModel):
    """Tokens for the case's unfinished withdrawals (or just `only`): `decision` clear or decline."""

    case_id: uuid.UUID
    staff_id: uuid.UUID
    decision: Literal["clear", "decline"]
    only: uuid.UUID | None = None


class WithdrawalSignal(BaseModel):
    withdrawal_id: uuid.UUID
    token: str


class DamlDeadline(BaseModel):
    """A deadline the workflow sleeps until (computed in an activity: calendars are data)."""

    case_id: uuid.UUID
    ends_at: datetime


class CaseStep(BaseModel):
    """A step of the workflow on the case's records, by the staff user who decided it."""

    case_id: uuid.UUID
    user_id: uuid.UUID
    staff_id: uuid.UUID | None = None
    reason: str = ""
    outcome: str = ""
    withdrawal_id: uuid.UUID | None = None
    at: datetime | None = None


class SarState(BaseModel):
    case_id: uuid.UUID
    stage: str
    daml_state: str = "none"
    ends_at: datetime | None = None

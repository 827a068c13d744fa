"""Compliance endpoints over AML cases: the queue, a case's file, assignment, notes, links, closing; the
SAR workflow's decisions; and lifting a freeze (two different compliance users).

Reads need the compliance role; every change needs `X-TOTP-Code` as well (`ComplianceWithTotp`). A SAR
decision is signed after that check as a decision token for this officer, case and action, and the
workflow verifies it (services/decision_tokens.py), as for withdrawal approvals. Staff only: nothing
here is ever shown to a customer.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from api.aml_sagas import SarSagas, SarSagasDep
from api.auth_deps import problem_responses, require_role, require_staff
from api.deps import EngineDep
from models.aml_cases_api import (
    AssignBody,
    CaseDetail,
    CaseNote,
    CasePage,
    CloseBody,
    DecisionBody,
    FreezeOut,
    LinkBody,
    NoteBody,
    SarBody,
    SarDecision,
    SarDecisionKind,
    SarDecisionOut,
)
from models.users import User
from services.aml import cases, freeze
from services.pagination import CURSOR_MAX_LENGTH

router = APIRouter(prefix="/admin/aml", tags=["admin-aml"])

Compliance = Annotated[User, Depends(require_role("compliance"))]
ComplianceWithTotp = Annotated[User, Depends(require_staff("compliance"))]
CaseStatus = Literal["pending", "investigating", "closed"]


@router.get("/cases", response_model=CasePage, responses=problem_responses(401, 403, 422))
async def case_queue(
    staff: Compliance,
    engine: EngineDep,
    status: CaseStatus | None = None,
    assignee_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=CURSOR_MAX_LENGTH)] = None,
) -> CasePage:
    """Cases, newest first (open ones unless `status` says otherwise)."""
    return await cases.case_queue(engine, status=status, assignee_id=assignee_id, limit=limit, cursor=cursor)


@router.get("/cases/{case_id}", response_model=CaseDetail, responses=problem_responses(401, 403, 404))
async def case_detail(case_id: uuid.UUID, staff: Compliance, engine: EngineDep) -> CaseDetail:
    """A case's file: alerts, notes, linked transactions, report and freeze."""
    return await cases.case_detail(engine, case_id)


@router.post(
    "/cases/{case_id}/assign", response_model=CaseDetail, responses=problem_responses(401, 403, 404, 409, 422)
)
async def assign(
    case_id: uuid.UUID, body: AssignBody, staff: ComplianceWithTotp, engine: EngineDep
) -> CaseDetail:
    """Give the case to a compliance user (a pending case becomes investigating)."""
    return await cases.assign(engine, case_id=case_id, assignee_id=body.assignee_id, staff_id=staff.id)


@router.post(
    "/cases/{case_id}/notes",
    status_code=201,
    response_model=CaseNote,
    responses=problem_responses(401, 403, 404, 422),
)
async def add_note(
    case_id: uuid.UUID, body: NoteBody, staff: ComplianceWithTotp, engine: EngineDep
) -> CaseNote:
    """Append a note to the case's file (notes are never edited or removed)."""
    return await cases.add_note(engine, case_id=case_id, author_id=staff.id, body=body.body)


@router.post(
    "/cases/{case_id}/transactions",
    response_model=CaseDetail,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def link_transaction(
    case_id: uuid.UUID, body: LinkBody, staff: ComplianceWithTotp, engine: EngineDep
) -> CaseDetail:
    """Link one of the customer's transactions to the case."""
    return await cases.link_transaction(
        engine, case_id=case_id, kind=body.kind, transaction_id=body.transaction_id, staff_id=staff.id
    )


@router.post(
    "/cases/{case_id}/close",
    response_model=CaseDetail,
    responses=problem_responses(401, 403, 404, 409, 422, 503),
)
async def close(
    case_id: uuid.UUID, body: CloseBody, staff: ComplianceWithTotp, engine: EngineDep, sagas: SarSagasDep
) -> CaseDetail:
    """Close the case with its outcome (false_positive, valuable_alert, confirmed_risk) and why; its SAR
    saga, if one waits (say after a report), ends. Refused while a withdrawal of the case is held."""
    closed = await cases.close_case(
        engine, case_id=case_id, outcome=body.outcome, staff_id=staff.id, note=body.note
    )
    await sagas.case_closed(case_id)
    return closed


# --- the SAR workflow's decisions --------------------------------------------------------------------

_DECISION_RESPONSES = problem_responses(401, 403, 404, 409, 422, 503)


async def _decide(
    sagas: SarSagas, case_id: uuid.UUID, kind: SarDecisionKind, staff: User, body: DecisionBody
) -> SarDecisionOut:
    """A decision that carries only its reason (the SAR filing carries more: `file_sar`)."""
    return await sagas.decide(
        case_id, SarDecision(kind=kind, staff_id=staff.id, token="", reason=body.reason)
    )


@router.post("/cases/{case_id}/clear", response_model=SarDecisionOut, responses=_DECISION_RESPONSES)
async def clear(
    case_id: uuid.UUID, body: DecisionBody, staff: ComplianceWithTotp, sagas: SarSagasDep
) -> SarDecisionOut:
    """Clear the case (false positive): it closes and its held withdrawals continue."""
    return await _decide(sagas, case_id, "clear", staff, body)


@router.post("/cases/{case_id}/decline", response_model=SarDecisionOut, responses=_DECISION_RESPONSES)
async def decline(
    case_id: uuid.UUID, body: DecisionBody, staff: ComplianceWithTotp, sagas: SarSagasDep
) -> SarDecisionOut:
    """Refuse the case's held withdrawals; their holds are released."""
    return await _decide(sagas, case_id, "decline", staff, body)


@router.post("/cases/{case_id}/sar", response_model=SarDecisionOut, responses=_DECISION_RESPONSES)
async def file_sar(
    case_id: uuid.UUID, body: SarBody, staff: ComplianceWithTotp, sagas: SarSagasDep
) -> SarDecisionOut:
    """Record the SAR filed with the NCA; with `daml_withdrawal_id`, a DAML request holds that withdrawal
    for 7 UK working days (no refusal by then is consent)."""
    decision = SarDecision(
        kind="file_sar", staff_id=staff.id, token="", nca_reference=body.nca_reference,
        narrative=body.narrative,
        attachments=[a.model_dump() for a in body.attachments], daml_withdrawal_id=body.daml_withdrawal_id,
    )  # fmt: skip
    return await sagas.decide(case_id, decision)


@router.post("/cases/{case_id}/nca-refused", response_model=SarDecisionOut, responses=_DECISION_RESPONSES)
async def nca_refused(
    case_id: uuid.UUID, body: DecisionBody, staff: ComplianceWithTotp, sagas: SarSagasDep
) -> SarDecisionOut:
    """The NCA refused consent within the notice period: the 31-day moratorium starts."""
    return await _decide(sagas, case_id, "nca_refused", staff, body)


@router.post("/cases/{case_id}/nca-consented", response_model=SarDecisionOut, responses=_DECISION_RESPONSES)
async def nca_consented(
    case_id: uuid.UUID, body: DecisionBody, staff: ComplianceWithTotp, sagas: SarSagasDep
) -> SarDecisionOut:
    """The NCA gave consent: the DAML withdrawal continues."""
    return await _decide(sagas, case_id, "nca_consented", staff, body)


@router.post("/cases/{case_id}/freeze", response_model=SarDecisionOut, responses=_DECISION_RESPONSES)
async def freeze_account(
    case_id: uuid.UUID, body: DecisionBody, staff: ComplianceWithTotp, sagas: SarSagasDep
) -> SarDecisionOut:
    """Freeze the customer: no trading, withdrawals wait with their hold, deposits still credited."""
    return await _decide(sagas, case_id, "freeze", staff, body)


# --- lifting a freeze: two different people ----------------------------------------------------------


def _freeze_out(user_id: uuid.UUID, state: freeze.FreezeState | None) -> FreezeOut:
    return FreezeOut(
        user_id=user_id,
        frozen=state is not None and state.active,
        frozen_by=state.frozen_by if state else None,
        unfreeze_requested_by=state.unfreeze_requested_by if state else None,
        lifted_by=state.lifted_by if state else None,
    )


@router.post(
    "/customers/{user_id}/unfreeze/request",
    response_model=FreezeOut,
    responses=problem_responses(401, 403, 409),
)
async def request_unfreeze(user_id: uuid.UUID, staff: ComplianceWithTotp, engine: EngineDep) -> FreezeOut:
    """First of two compliance users: ask to lift the customer's freeze."""
    return _freeze_out(user_id, await freeze.request_unfreeze(engine, user_id=user_id, staff_id=staff.id))


@router.post(
    "/customers/{user_id}/unfreeze/confirm",
    response_model=FreezeOut,
    responses=problem_responses(401, 403, 409),
)
async def confirm_unfreeze(user_id: uuid.UUID, staff: ComplianceWithTotp, engine: EngineDep) -> FreezeOut:
    """Second, different compliance user: lift the freeze (held withdrawals carry on)."""
    return _freeze_out(user_id, await freeze.confirm_unfreeze(engine, user_id=user_id, staff_id=staff.id))

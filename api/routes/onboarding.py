"""The FCA PS23/6 gates a customer passes before a first trade (services/first_trade_gates.py).

Risk warning, then a 24-hour cooling-off (a durable timer started by the acknowledgement), client
categorisation with its declaration, and the appropriateness assessment. `GET /onboarding` shows where
each gate stands; an order placed before all are passed is rejected naming the gate (`gate_<name>`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from api.auth_deps import problem_responses
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.routes.accounts import Customer
from api.routes.orders import orders_task_queue
from models.first_trade_gates import (
    AssessmentAnswers,
    AssessmentResult,
    Categorisation,
    CategorisationOut,
    CoolingOffInput,
    GateStatus,
    Questionnaire,
    RiskWarning,
    RiskWarningAck,
)
from services import first_trade_gates as gates
from workflows.first_trade import start_cooling_off

router = APIRouter(prefix="/onboarding", tags=["onboarding"])


@router.get("", response_model=list[GateStatus], responses=problem_responses(401, 403))
async def gate_statuses(user: Customer, engine: EngineDep) -> list[GateStatus]:
    """Where each gate before a first trade stands, and what it still needs."""
    async with engine.connect() as conn:
        return await gates.gate_statuses(conn, user.id)


@router.get("/risk-warning", response_model=RiskWarning, responses=problem_responses(401, 403))
async def risk_warning(user: Customer, engine: EngineDep) -> RiskWarning:
    """Your personalised risk warning, and when you acknowledged it."""
    async with engine.connect() as conn:
        return await gates.risk_warning(conn, user.id)


@router.post(
    "/risk-warning", response_model=list[GateStatus], responses=problem_responses(401, 403, 422, 503)
)
async def acknowledge_risk_warning(
    request: Request,
    body: RiskWarningAck,
    user: Customer,
    engine: EngineDep,
    settings: SettingsDep,
    client: TemporalDep,
) -> list[GateStatus]:
    """Acknowledge the risk warning; your 24-hour cooling-off starts now (a repeat changes nothing)."""
    now = datetime.now(UTC)
    cooling = await gates.acknowledge_risk_warning(
        engine, user.id, body.version, cooling_off_seconds=settings.first_trade_cooling_off_seconds, now=now
    )
    if not cooling.completed:  # also re-starts a saga whose first start was lost
        await start_cooling_off(
            client,
            CoolingOffInput(user_id=user.id, seconds=cooling.seconds_left(now)),
            orders_task_queue(request),
        )
    async with engine.connect() as conn:
        return await gates.gate_statuses(conn, user.id)


@router.post("/categorisation", response_model=CategorisationOut, responses=problem_responses(401, 403, 422))
async def categorise(body: Categorisation, user: Customer, engine: EngineDep) -> CategorisationOut:
    """Say which kind of investor you are, with the declaration that category needs."""
    when = await gates.categorise(engine, user.id, body)
    return CategorisationOut(category=body.category, categorised_at=when)


@router.get("/assessment", response_model=Questionnaire, responses=problem_responses(401, 403))
async def assessment_questions(user: Customer, settings: SettingsDep) -> Questionnaire:
    """The appropriateness assessment's questions."""
    return gates.load_questionnaire(settings.appropriateness_questions_file).public()


@router.post("/assessment", response_model=AssessmentResult, responses=problem_responses(401, 403, 422, 429))
async def submit_assessment(
    body: AssessmentAnswers, user: Customer, engine: EngineDep, settings: SettingsDep
) -> AssessmentResult:
    """Answer every question; a failed attempt can be repeated after 24 hours."""
    spec = gates.load_questionnaire(settings.appropriateness_questions_file)
    return await gates.submit_assessment(engine, user.id, spec, body.version, body.answers)

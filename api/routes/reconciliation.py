"""Staff endpoints of reconciliation (issue 20): runs, one run with its items, a run on demand, and the
two-person acknowledgement that resumes a currency the reconciliation halted."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import text

from api.auth_deps import OpsWithTotp, problem_responses, require_role
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.errors import ProblemError
from models.assets import SCALES
from models.reconciliation import ReconcileInput
from models.users import User
from services import reconciliation as recon
from temporal import task_queues

router = APIRouter(prefix="/admin/reconciliation", tags=["admin"])
Ops = Annotated[User, Depends(require_role("ops"))]


class RunRow(BaseModel):
    run_id: uuid.UUID | None
    currency: str
    status: str | None
    provider_balance: str | None
    ledger_balance: str | None
    in_flight: str | None
    discrepancy: str | None
    cut_off: datetime | None
    created_at: datetime


class RunDetail(RunRow):
    details: dict[str, Any] | None


def _s(v: Decimal | None, currency: str) -> str | None:
    return None if v is None else f"{v:.{SCALES.get(currency, 8)}f}"


def _row(r: Any, detail: bool = False) -> dict[str, Any]:
    out = {
        "run_id": r[0], "currency": r[1], "status": r[2], "provider_balance": _s(r[3], r[1]),
        "ledger_balance": _s(r[4], r[1]), "in_flight": _s(r[5], r[1]), "discrepancy": _s(r[6], r[1]),
        "cut_off": r[7], "created_at": r[8],
    }  # fmt: skip
    if detail:
        out["details"] = r[9]
    return out


_COLS = (
    "run_id, currency, status, provider_balance, ledger_balance, in_flight, discrepancy, cut_off, created_at"
)


@router.get("/runs", response_model=list[RunRow], responses=problem_responses(401, 403))
async def list_runs(staff: Ops, engine: EngineDep) -> list[RunRow]:
    """The latest reconciliation rows (one per currency per run), newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(f"SELECT {_COLS} FROM reconciliation_runs ORDER BY created_at DESC LIMIT 200")
            )
        ).all()
    return [RunRow(**_row(r)) for r in rows]


@router.get("/runs/{run_id}", response_model=list[RunDetail], responses=problem_responses(401, 403, 404))
async def get_run(run_id: uuid.UUID, staff: Ops, engine: EngineDep) -> list[RunDetail]:
    """One run: every currency with its items (in flight, unmatched fills, missing on-chain)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(f"SELECT {_COLS}, details FROM reconciliation_runs WHERE run_id = :r ORDER BY currency"),
                {"r": run_id},
            )
        ).all()
    if not rows:
        raise ProblemError(404, "not_found", "no such reconciliation run")
    return [RunDetail(**_row(r, detail=True)) for r in rows]


class Started(BaseModel):
    run_id: uuid.UUID


@router.post("/runs", status_code=202, response_model=Started, responses=problem_responses(401, 403))
async def trigger(staff: Ops, client: TemporalDep) -> Started:
    """Start a reconciliation run now; its rows appear under the returned run id."""
    from workflows.reconciliation import ReconciliationWorkflow, reconciliation_workflow_id

    run_id = uuid.uuid4()
    await client.start_workflow(
        ReconciliationWorkflow.run,
        ReconcileInput(run_id=run_id, trigger=f"staff:{staff.id}"),
        id=reconciliation_workflow_id(run_id),
        task_queue=task_queues.OPS,
    )
    return Started(run_id=run_id)


class AckBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)
    override: bool = False


class AckOut(BaseModel):
    currency: str
    resumed: bool


@router.post(
    "/halts/{currency}/acknowledge",
    response_model=AckOut,
    responses=problem_responses(401, 403, 404, 409),
)
async def acknowledge(
    currency: str, body: AckBody, staff: OpsWithTotp, engine: EngineDep, settings: SettingsDep
) -> AckOut:
    """Acknowledge a reconciliation halt (needs `X-TOTP-Code`); a second staff member resumes it."""
    if currency not in SCALES:
        raise ProblemError(404, "unknown_currency", f"no currency {currency}")
    from activities.reconciliation import policy_from

    resumed = await recon.acknowledge(
        engine, currency=currency, staff_id=staff.id, reason=body.reason, override=body.override,
        policy=policy_from(settings),
    )  # fmt: skip
    return AckOut(currency=currency, resumed=resumed)

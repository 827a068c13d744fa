"""Ops' view of GDPR requests: subject-access exports past their one-month deadline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth_deps import problem_responses, require_role
from api.deps import EngineDep
from models.gdpr import OverdueExport
from models.users import User
from services import gdpr_requests

router = APIRouter(prefix="/admin/gdpr", tags=["admin"])

Ops = Annotated[User, Depends(require_role("ops"))]


@router.get("/exports/overdue", response_model=list[OverdueExport], responses=problem_responses(401, 403))
async def overdue_exports(user: Ops, engine: EngineDep) -> list[OverdueExport]:
    """Data exports not delivered within one month of the request, oldest deadline first."""
    return await gdpr_requests.overdue(engine, now=datetime.now(UTC))

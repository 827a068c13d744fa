"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import EngineDep, TemporalHandle

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


async def _check_postgres(engine: EngineDep) -> str:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    return "ok"


async def _check_temporal(handle: TemporalHandle) -> str:
    client = await handle.get(timeout=2.0)
    await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=2))
    return "ok"


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is unreachable"}},
)
async def readyz(request: Request, engine: EngineDep) -> JSONResponse:
    """PostgreSQL and Temporal are reachable (503 names the one that is not)."""
    checks: dict[str, str] = {}
    for name, probe in (
        ("postgres", _check_postgres(engine)),
        ("temporal", _check_temporal(request.app.state.temporal)),
    ):
        try:
            checks[name] = await asyncio.wait_for(probe, timeout=3.0)
        except Exception as e:
            checks[name] = f"unavailable: {type(e).__name__}"
    ok = all(v == "ok" for v in checks.values())
    body = Readiness(status="ready" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)

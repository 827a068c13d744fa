"""The dashboard: health of PostgreSQL, Temporal and the venues, reconciliation, halts, queues, float."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.console.deps import Staff, require
from api.console.templating import render
from api.deps import EngineDep, TemporalHandle
from models.market import SYMBOLS
from services.staff import dashboard
from services.staff.permissions import Permission

router = APIRouter()
Viewer = Annotated[Staff, Depends(require(Permission.DASHBOARD_VIEW))]


def _market_parts(request: Request) -> tuple[Any, Any, dict[str, tuple[str, ...]], float | None]:
    """The API process's router breakers and live books, if the market data has been built."""
    market = getattr(request.app.state, "market", None)
    if market is None:
        return None, None, {}, None
    breakers, keeper, venues = market.health_sources()
    symbols = tuple(SYMBOLS) if keeper is not None else ()
    return breakers, keeper, dict.fromkeys(venues, symbols), getattr(keeper, "max_age_s", None)


@router.get("", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page(request: Request, staff: Viewer, engine: EngineDep) -> HTMLResponse:
    """The dashboard."""
    handle: TemporalHandle = request.app.state.temporal

    async def temporal_check() -> None:
        client = await handle.get(timeout=2.0)
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=2))

    breakers, keeper, venues, max_age = _market_parts(request)
    board = await dashboard.gather(
        engine, temporal_check=temporal_check, breakers=breakers, books=keeper, venues=venues,
        max_book_age_s=max_age,
    )  # fmt: skip
    return render(request, "dashboard.html", staff, board=board)

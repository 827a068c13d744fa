"""The customer's rights over their data (docs/architecture.md §11): a copy of it (subject-access export)
and closing the account. The work is in services/gdpr_*.py and the sagas in workflows/gdpr.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.auth_deps import client_ip, problem_responses, totp_guard
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.routes.accounts import Customer
from models.gdpr import ClosureOut, ExportInput, ExportRequestOut
from services import gdpr_closure, gdpr_requests
from temporal import task_queues
from workflows.gdpr import TemporalRetentionSagas, start_export

router = APIRouter(prefix="/account", tags=["account"])


def gdpr_task_queue(request: Request) -> str:
    """This app's task queue for the GDPR sagas (tests run their own)."""
    queue: str = getattr(request.app.state, "gdpr_task_queue", task_queues.OPS)
    return queue


@router.post(
    "/export", status_code=202, response_model=ExportRequestOut, responses=problem_responses(401, 403, 503)
)
async def request_export(
    request: Request, user: Customer, engine: EngineDep, client: TemporalDep
) -> ExportRequestOut:
    """Ask for a copy of your data; a link to download it is emailed within one month (usually minutes).
    Asking again while one is being prepared returns that one."""
    export = await gdpr_requests.request_export(engine, user.id, now=datetime.now(UTC))
    await start_export(client, ExportInput(request_id=export.id, user_id=user.id), gdpr_task_queue(request))
    return export


@router.get("/export", response_model=list[ExportRequestOut], responses=problem_responses(401, 403))
async def list_exports(user: Customer, engine: EngineDep) -> list[ExportRequestOut]:
    """Your data exports, newest first, with their deadlines and link expiry."""
    return await gdpr_requests.list_requests(engine, user.id)


@router.get(
    "/export/{export_id}",
    response_class=Response,
    responses={200: {"content": {"application/zip": {}}}, **problem_responses(401, 403, 404, 409, 410, 422)},
)
async def download_export(
    export_id: uuid.UUID,
    user: Customer,
    engine: EngineDep,
    settings: SettingsDep,
    token: Annotated[
        str, Query(min_length=1, max_length=2048, description="The token from the emailed link.")
    ],
) -> Response:
    """Download your export (a zip of JSON and CSV files) with the link from the email, while it is valid."""
    archive = await gdpr_requests.open_download(
        engine, settings, export_id, user.id, token, now=datetime.now(UTC)
    )
    disposition = f'attachment; filename="broker-data-{export_id}.zip"'
    return Response(archive, media_type="application/zip", headers={"Content-Disposition": disposition})


@router.post(
    "/close",
    response_model=ClosureOut,
    dependencies=[Depends(totp_guard(mandatory=False))],
    responses=problem_responses(401, 403, 409, 503),
)
async def close_account(
    request: Request, user: Customer, engine: EngineDep, settings: SettingsDep, client: TemporalDep
) -> ClosureOut:
    """Close your account (your X-TOTP-Code if you use 2FA). Refused while you hold any balance or have open
    orders, deposits or withdrawals. You are signed out everywhere and cannot sign in again."""
    return await gdpr_closure.close_account(
        engine,
        user.id,
        sagas=TemporalRetentionSagas(client, gdpr_task_queue(request)),
        retention_years=settings.gdpr_retention_years,
        ip=client_ip(request),
        now=datetime.now(UTC),
    )

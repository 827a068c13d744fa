"""Subject-access requests: their rows, their one-month deadline, and who may download them.

A customer has at most one export being built (`REQUESTED`); asking again while it is returns that one
(the partial unique index in migration 0035 decides between concurrent requests). Its deadline is one
calendar month from the request (UK GDPR Art. 12(3)); ops list the ones past it with `overdue`.

A download needs both the owner's login and a valid link token (services/gdpr_links.py): a forwarded link
alone opens nothing, and neither does another customer's login.
"""

from __future__ import annotations

import calendar
import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from models.gdpr import ExportBuilt, ExportRequestOut, ExportStatus, OverdueExport, export_workflow_id
from services import gdpr_links
from services.errors import DomainError


class ExportNotFound(DomainError):
    """No such export of this customer (another customer's is not found either)."""

    default_code = "not_found"
    status = 404


class ExportNotReady(DomainError):
    """The export is still being built; the link is emailed when it is ready."""

    default_code = "export_not_ready"
    status = 409


def add_one_month(moment: datetime) -> datetime:
    """The same day and time next month, or that month's last day (31 January -> 28/29 February)."""
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _out(r: Any) -> ExportRequestOut:
    return ExportRequestOut(
        id=r.id,
        status=r.status,
        requested_at=r.created_at,
        due_at=r.due_at,
        ready_at=r.ready_at,
        expires_at=r.expires_at,
        workflow_id=export_workflow_id(r.id),
    )


_COLUMNS = "id, user_id, status, created_at, due_at, ready_at, expires_at, emailed_at"


async def request_export(engine: AsyncEngine, user_id: uuid.UUID, *, now: datetime) -> ExportRequestOut:
    """The customer's export being built, created now if there is none (a repeat returns the same one)."""
    for _ in range(3):  # the open one may become READY between the insert and the read: then insert again
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO gdpr_export_requests (id, user_id, status, due_at, created_at, updated_at) "
                    "VALUES (:id, :u, 'REQUESTED', :due, :now, :now) "
                    "ON CONFLICT (user_id) WHERE status = 'REQUESTED' DO NOTHING"
                ),
                {"id": uuid.uuid4(), "u": user_id, "due": add_one_month(now), "now": now},
            )
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_COLUMNS} FROM gdpr_export_requests "
                        "WHERE user_id = :u AND status = 'REQUESTED'"
                    ),
                    {"u": user_id},
                )
            ).first()
        if row is not None:
            return _out(row)
    raise RuntimeError("export request kept changing under us")  # not reachable in practice


async def list_requests(engine: AsyncEngine, user_id: uuid.UUID) -> list[ExportRequestOut]:
    """The customer's exports, newest first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM gdpr_export_requests WHERE user_id = :u ORDER BY created_at DESC"
                ),
                {"u": user_id},
            )
        ).all()
    return [_out(r) for r in rows]


async def _load(engine: AsyncEngine, request_id: uuid.UUID) -> Any:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM gdpr_export_requests WHERE id = :id"), {"id": request_id}
            )
        ).first()
    if row is None:
        raise ExportNotFound("no such export")
    return row


async def mark_ready(
    engine: AsyncEngine,
    request_id: uuid.UUID,
    archive: bytes,
    *,
    now: datetime,
    link_seconds: float,
) -> ExportBuilt:
    """Store the archive and when its link expires, in one statement; a repeat returns the first answer
    (and stores nothing)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "UPDATE gdpr_export_requests SET status = 'READY', ready_at = :now, expires_at = :exp, "
                    "content = :c, sha256 = :h, size_bytes = :n, updated_at = :now "
                    "WHERE id = :id AND status = 'REQUESTED' "
                    "RETURNING ready_at, expires_at, sha256, size_bytes"
                ),
                {
                    "id": request_id,
                    "now": now,
                    "exp": now + timedelta(seconds=link_seconds),
                    "c": archive,
                    "h": hashlib.sha256(archive).hexdigest(),
                    "n": len(archive),
                },
            )
        ).first()
        if row is None:
            row = (
                await conn.execute(
                    text(
                        "SELECT ready_at, expires_at, sha256, size_bytes FROM gdpr_export_requests "
                        "WHERE id = :id"
                    ),
                    {"id": request_id},
                )
            ).one()
    return _built(request_id, row)


def _built(request_id: uuid.UUID, row: Any) -> ExportBuilt:
    return ExportBuilt(
        request_id=request_id,
        expires_at=row.expires_at,
        sha256=row.sha256 or "",
        size_bytes=row.size_bytes or 0,
        link_seconds=(row.expires_at - row.ready_at).total_seconds(),
    )


async def is_ready(engine: AsyncEngine, request_id: uuid.UUID) -> ExportBuilt | None:
    """The built export (a retried build finds it and does not build again), or None."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, ready_at, expires_at, sha256, size_bytes FROM gdpr_export_requests "
                    "WHERE id = :id"
                ),
                {"id": request_id},
            )
        ).first()
    if row is None:
        raise ExportNotFound("no such export")
    if row.status == ExportStatus.REQUESTED:
        return None
    return _built(request_id, row)


async def email_target(engine: AsyncEngine, request_id: uuid.UUID) -> tuple[str, uuid.UUID, datetime, bool]:
    """(address, customer, link expiry, already emailed) for the export's email."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT u.email, r.user_id, r.expires_at, r.emailed_at FROM gdpr_export_requests r "
                    "JOIN users u ON u.id = r.user_id WHERE r.id = :id"
                ),
                {"id": request_id},
            )
        ).one()
    return row.email, row.user_id, row.expires_at, row.emailed_at is not None


async def mark_emailed(engine: AsyncEngine, request_id: uuid.UUID, *, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE gdpr_export_requests SET emailed_at = :now, updated_at = :now "
                "WHERE id = :id AND emailed_at IS NULL"
            ),
            {"id": request_id, "now": now},
        )


async def expire(engine: AsyncEngine, request_id: uuid.UUID, *, now: datetime) -> None:
    """Erase the archive and mark the export EXPIRED (idempotent)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE gdpr_export_requests SET status = 'EXPIRED', content = NULL, updated_at = :now "
                "WHERE id = :id AND status = 'READY'"
            ),
            {"id": request_id, "now": now},
        )


async def overdue(engine: AsyncEngine, *, now: datetime) -> list[OverdueExport]:
    """Exports not yet delivered past their one-month deadline, oldest deadline first."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_COLUMNS} FROM gdpr_export_requests "
                    "WHERE status = 'REQUESTED' AND due_at < :now "
                    "ORDER BY due_at"
                ),
                {"now": now},
            )
        ).all()
    return [
        OverdueExport(
            id=r.id,
            user_id=r.user_id,
            status=r.status,
            requested_at=r.created_at,
            due_at=r.due_at,
            workflow_id=export_workflow_id(r.id),
        )
        for r in rows
    ]


async def open_download(
    engine: AsyncEngine,
    settings: Settings,
    request_id: uuid.UUID,
    user_id: uuid.UUID,
    token: str,
    *,
    now: datetime,
) -> bytes:
    """The archive, for its owner with a valid link; otherwise the refusal that says why."""
    row = await _load(engine, request_id)
    if row.user_id != user_id:
        raise ExportNotFound("no such export")
    gdpr_links.check(settings, token, request_id, user_id)
    if row.status == ExportStatus.REQUESTED:
        raise ExportNotReady("this export is still being prepared")
    async with engine.connect() as conn:
        content = (
            await conn.execute(
                text(
                    "SELECT content FROM gdpr_export_requests "
                    "WHERE id = :id AND status = 'READY' AND expires_at > :now AND content IS NOT NULL"
                ),
                {"id": request_id, "now": now},
            )
        ).scalar()
    if content is None:
        raise gdpr_links.ExportLinkExpired("this download link has expired; request a new export")
    return bytes(content)

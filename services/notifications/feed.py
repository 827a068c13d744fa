"""The customer's in-app feed: a page of their own notifications, mark read, unread count.

Every query is filtered by the customer's id: one customer never reads or marks another's rows (a foreign
id is simply "not found").
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import DomainError
from services.pagination import DbRow, fetch_page


class NotificationNotFound(DomainError):
    """No notification of this customer has that id. Nothing was changed."""

    default_code = "not_found"
    status = 404


def _position(row: DbRow) -> tuple[datetime, uuid.UUID]:
    return row.created_at, row.id


async def page(
    engine: AsyncEngine, user_id: uuid.UUID, *, limit: int, cursor: str | None, unread_only: bool = False
) -> tuple[list[DbRow], str | None]:
    where = "user_id = :u" + (" AND read_at IS NULL" if unread_only else "")
    return await fetch_page(
        engine,
        select="SELECT id, category, title, body, created_at, read_at FROM user_notifications",
        where=where,
        params={"u": user_id},
        limit=limit,
        cursor=cursor,
        position=_position,
    )


async def unread_count(engine: AsyncEngine, user_id: uuid.UUID) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT count(*) FROM user_notifications WHERE user_id = :u AND read_at IS NULL"),
            {"u": user_id},
        )
        return int(result.scalar_one())


async def mark_read(engine: AsyncEngine, user_id: uuid.UUID, notification_id: uuid.UUID) -> None:
    """Mark one of the customer's notifications read (again is a no-op)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE user_notifications SET read_at = coalesce(read_at, now()) "
                "WHERE id = :id AND user_id = :u RETURNING id"
            ),
            {"id": notification_id, "u": user_id},
        )
        if result.first() is None:
            raise NotificationNotFound("no such notification")


async def mark_all_read(engine: AsyncEngine, user_id: uuid.UUID) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text("UPDATE user_notifications SET read_at = now() WHERE user_id = :u AND read_at IS NULL"),
            {"u": user_id},
        )
        return int(result.rowcount)

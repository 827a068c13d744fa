"""What ops see and do about deliveries that kept failing: list the DEAD ones, replay one.

A delivery reaches DEAD only from known failures (the provider refused, or never took it, `max_attempts`
times); an in-doubt send is never dead-lettered, so replaying a DEAD delivery cannot send twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import DomainError
from services.pagination import DbRow, fetch_page


class DeliveryNotReplayable(DomainError):
    """The delivery does not exist or is not DEAD (already replayed, or sent). Nothing was changed."""

    default_code = "not_replayable"
    status = 409


def _position(row: DbRow) -> tuple[datetime, uuid.UUID]:
    return row.created_at, row.id


async def list_dead(engine: AsyncEngine, *, limit: int, cursor: str | None) -> tuple[list[DbRow], str | None]:
    return await fetch_page(
        engine,
        select=(
            "SELECT * FROM (SELECT d.id, d.outbox_id, d.channel, d.recipient, d.attempts, d.last_error, "
            "d.updated_at, d.created_at, d.status, o.event, o.user_id FROM notification_deliveries d "
            "JOIN notification_outbox o ON o.id = d.outbox_id) dl"
        ),
        where="status = 'DEAD'",
        params={},
        limit=limit,
        cursor=cursor,
        position=_position,
    )


async def replay(engine: AsyncEngine, delivery_id: uuid.UUID, *, staff_id: uuid.UUID) -> None:
    """Put a DEAD delivery back in the queue with a fresh attempt budget; audited with who did it."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE notification_deliveries SET status = 'PENDING', attempts = 0, sending_since = NULL, "
                "next_attempt_at = now(), updated_at = now() WHERE id = :id AND status = 'DEAD' RETURNING id"
            ),
            {"id": delivery_id},
        )
        if result.first() is None:
            raise DeliveryNotReplayable("no dead delivery with this id")
        await conn.execute(
            text(
                "INSERT INTO audit_log (id, actor_id, actor_type, action, target_type, target_id) "
                "VALUES (:id, :actor, 'staff', 'notification.delivery.replay', 'notification_delivery', "
                ":target)"
            ),
            {"id": uuid.uuid4(), "actor": staff_id, "target": str(delivery_id)},
        )

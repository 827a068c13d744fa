"""The transactional outbox: a notification is written in the same transaction as the change it reports.

`enqueue` only inserts; the caller commits (or rolls back, and then no notification exists either). The
dedupe key is the business identity of the event (e.g. `order_filled:<order id>`), so an activity retried
after its commit, or a webhook delivered twice, enqueues one notification, not two.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.notifications.events import NotificationEvent

_INSERT = text(
    "INSERT INTO notification_outbox (id, event, user_id, payload, dedupe_key) "
    "VALUES (:id, :event, :user_id, CAST(:payload AS jsonb), :dedupe_key) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)


def _json_default(value: Any) -> str:
    # Decimal, UUID, datetime: as strings (amounts keep their exact digits; never floats).
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


async def enqueue(
    session: AsyncSession | AsyncConnection,
    *,
    event: str,
    user_id: uuid.UUID | None,
    payload: dict[str, Any],
    dedupe_key: str,
) -> None:
    """Insert one outbox row in the caller's transaction; never commits.

    Args:
        session: the caller's session or connection, inside the transaction of the change.
        event: a `NotificationEvent` value (unknown names raise ValueError).
        user_id: the customer it is for; None for ops events.
        payload: what the templates need; Decimal/UUID/datetime values are stored as strings.
        dedupe_key: the event's business identity; a second enqueue with it does nothing.
    """
    NotificationEvent(event)
    params = {
        "id": uuid.uuid4(),
        "event": str(event),
        "user_id": user_id,
        "payload": json.dumps(payload, default=_json_default),
        "dedupe_key": dedupe_key,
    }
    # No NOTIFY here: it would take PostgreSQL's global notify lock at the commit of every business
    # transaction (orders, withdrawals); the dispatchers poll (`NOTIFICATION_POLL_SECONDS`) instead.
    await session.execute(_INSERT, params)

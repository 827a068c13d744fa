"""Ops alerts and the audit trail, one way for every service: an audit row in the caller's transaction,
and for an alert also a warning log line that paging picks up."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("broker.alerts")


async def alert(
    conn: AsyncConnection, action: str, *, target_type: str, target_id: str, **details: Any
) -> None:
    """An ops alert: a warning log line (paging picks it up) and an audit row in the caller's transaction."""
    log.warning(json.dumps({"alert": action, "target": target_id, **details}, default=str))
    await conn.execute(
        text(
            "INSERT INTO audit_log (id, actor_type, action, target_type, target_id, details) "
            "VALUES (:id, 'system', :a, :tt, :ti, CAST(:d AS jsonb))"
        ),
        {
            "id": uuid.uuid4(),
            "a": action,
            "tt": target_type,
            "ti": target_id,
            "d": json.dumps(details, default=str),
        },
    )


async def audit(
    conn: AsyncConnection,
    action: str,
    *,
    actor_id: uuid.UUID | None,
    actor_type: str,
    target_type: str,
    target_id: str,
    **details: Any,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO audit_log (id, actor_id, actor_type, action, target_type, target_id, details) "
            "VALUES (:id, :actor, :at, :a, :tt, :ti, CAST(:d AS jsonb))"
        ),
        {
            "id": uuid.uuid4(),
            "actor": actor_id,
            "at": actor_type,
            "a": action,
            "tt": target_type,
            "ti": target_id,
            "d": json.dumps(details, default=str),
        },
    )

"""Ops alerts and the audit trail, one way for every service: an audit row in the caller's transaction,
and for an alert also a warning log line that paging picks up."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services import audit as audit_log

log = logging.getLogger("broker.alerts")


async def alert(
    conn: AsyncConnection, action: str, *, target_type: str, target_id: str, **details: Any
) -> None:
    """An ops alert: a warning log line (paging picks it up) and an audit row in the caller's transaction."""
    log.warning(json.dumps({"alert": action, "target": target_id, **details}, default=str))
    await audit_log.record(conn, action, target_type=target_type, target_id=target_id, details=details)


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
    await audit_log.record(
        conn, action, actor_id=actor_id, actor_type=actor_type, target_type=target_type, target_id=target_id,
        details=details,
    )  # fmt: skip

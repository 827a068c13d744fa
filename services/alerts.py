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
    await ops_notice(conn, action, target_type=target_type, target_id=target_id, **details)
    await audit_log.record(conn, action, target_type=target_type, target_id=target_id, details=details)


# Alerts with an ops notification of their own kind; every other alert goes out as a generic ops alert.
_OPS_EVENTS = {
    "ops.alert.float_below_threshold": "ops_float_low",
    "ops.alert.reconciliation_mismatch": "ops_reconciliation_mismatch",
    "ops.alert.failed_logins": "ops_failed_logins",
    "ops.alert.large_withdrawal": "ops_large_withdrawal",
    "ops.alert.venue_down": "ops_venue_down",
}


async def ops_notice(
    conn: AsyncConnection, action: str, *, target_type: str, target_id: str, **details: Any
) -> None:
    """The ops mailbox and webhook notification of an alert, in the caller's transaction (the outbox)."""
    from services.notifications import enqueue

    event = _OPS_EVENTS.get(action, "ops_alert")
    summary = f"{action.removeprefix('ops.alert.').replace('_', ' ')} ({target_type} {target_id})"
    await enqueue(
        conn,
        event=event,
        user_id=None,
        payload={"summary": summary, "details": {k: str(v) for k, v in details.items()}},
        dedupe_key=f"{action}:{target_id}:{uuid.uuid4()}",
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
    await audit_log.record(
        conn, action, actor_id=actor_id, actor_type=actor_type, target_type=target_type, target_id=target_id,
        details=details,
    )  # fmt: skip

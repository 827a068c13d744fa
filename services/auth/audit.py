"""Auth events go to two places: the append-only `audit_log` table, in the same transaction as the change
they describe (so a rolled-back change leaves no event), and a structured JSON log line for the SIEM."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from services import audit as audit_log

log = logging.getLogger("broker.auth")


def audit(
    session: AsyncSession,
    action: str,
    *,
    user_id: uuid.UUID | None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record `action` (e.g. `auth.login.failed`) about `user_id` (None when the account is unknown)."""
    audit_log.add(
        session,
        action,
        actor_id=user_id,
        actor_type="user" if user_id else "anonymous",
        target_type="user" if user_id else None,
        target_id=user_id,
        details=details,
        ip=ip,
    )
    log_event(action, user_id=user_id, ip=ip, details=details)


def log_event(
    action: str, *, user_id: uuid.UUID | None, ip: str | None, details: dict[str, Any] | None = None
) -> None:
    """The log line alone, for events too frequent to audit (attempts refused while locked)."""
    log.info(
        json.dumps(
            {"event": action, "user_id": str(user_id) if user_id else None, "ip": ip, **(details or {})},
            default=str,
        )
    )

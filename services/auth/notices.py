"""The auth flows' notifications, written to the outbox in the flow's own transaction (issue 17): the mail
exists exactly when the change does, and no longer dies with the API process that was to send it.

Verification and reset mails carry single-use links; they go by email only (`Category.ACCOUNT`).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlmodel.ext.asyncio.session import AsyncSession

from services.auth.context import AuthConfig
from services.notifications import NotificationEvent, enqueue

RESET_HINT = "request a password reset (POST /api/v1/auth/password-reset)"
# More than this many failed logins on one account within the window: an ops alert (seed §C.9), once
# per crossing.
FAILED_LOGINS_ALERT = 5
FAILED_LOGINS_WINDOW = timedelta(minutes=15)


def _key(event: str, *parts: object) -> str:
    return f"{event}:" + ":".join(str(p) for p in parts)


async def notify(
    session: AsyncSession, event: NotificationEvent, user_id: uuid.UUID, payload: dict[str, Any], key: str
) -> None:
    await enqueue(session, event=event, user_id=user_id, payload=payload, dedupe_key=key)


async def verification(session: AsyncSession, cfg: AuthConfig, user_id: uuid.UUID, token: str) -> None:
    link = f"{cfg.public_base_url.rstrip('/')}/api/v1/auth/verify-email?token={token}"
    hours = int(cfg.policy.email_token_ttl.total_seconds() // 3600)
    await notify(
        session,
        NotificationEvent.EMAIL_VERIFICATION,
        user_id,
        {"link": link, "valid_hours": hours},
        _key("email_verification", user_id, uuid.uuid4()),  # each (re)send is its own mail
    )


async def account_exists(session: AsyncSession, user_id: uuid.UUID) -> None:
    await notify(
        session,
        NotificationEvent.ACCOUNT_EXISTS,
        user_id,
        {"reset_hint": RESET_HINT},
        _key("account_exists", user_id, uuid.uuid4()),
    )


async def password_reset(session: AsyncSession, cfg: AuthConfig, user_id: uuid.UUID, token: str) -> None:
    # In the fragment: browsers never send it to a server, so it stays out of every access log.
    link = f"{cfg.public_base_url.rstrip('/')}/reset-password#token={token}"
    minutes = int(cfg.policy.reset_token_ttl.total_seconds() // 60)
    digest = hashlib.sha256(token.encode()).hexdigest()[:32]
    await notify(
        session,
        NotificationEvent.PASSWORD_RESET,
        user_id,
        {"token": token, "link": link, "valid_minutes": minutes},
        _key("password_reset", user_id, digest),
    )


async def security(
    session: AsyncSession,
    event: NotificationEvent,
    user_id: uuid.UUID,
    *,
    when: datetime,
    ip: str | None,
    **extra: Any,
) -> None:
    """A security event (new device, password changed, 2FA on/off, session revoked): cannot be turned off."""
    payload = {"when": when.isoformat(), "ip": ip or "unknown", **extra}
    await notify(session, event, user_id, payload, _key(event.value, user_id, uuid.uuid4()))


async def failed_logins(session: AsyncSession, user_id: uuid.UUID, *, now: datetime, ip: str) -> None:
    """Alert ops when this failure is the one that takes the account past `FAILED_LOGINS_ALERT` failures
    in `FAILED_LOGINS_WINDOW` (the failure's audit row is already in the session)."""
    from services.alerts import alert

    await session.flush()
    count = (
        await session.execute(
            text(
                "SELECT count(*) FROM audit_log WHERE actor_id = :u AND action = 'auth.login.failed' "
                "AND created_at > :since"
            ),
            {"u": user_id, "since": now - FAILED_LOGINS_WINDOW},
        )
    ).scalar_one()
    if count == FAILED_LOGINS_ALERT + 1:
        conn = await session.connection()
        await alert(
            conn,
            "ops.alert.failed_logins",
            target_type="user",
            target_id=str(user_id),
            failures=str(count),
            window_minutes=str(int(FAILED_LOGINS_WINDOW.total_seconds() // 60)),
            last_ip=ip,
        )

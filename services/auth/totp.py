"""TOTP second factor (RFC 6238 via pyotp): 6 digits, 30-second steps, one step of clock drift either way.

A code is accepted once only: the last accepted time step is stored per user (`totp_usage`) and a code
for that step or an earlier one is refused, even inside the drift window. Wrong and replayed codes are
counted; five lock the second factor with the same back-off as logins.
"""

from __future__ import annotations

import hmac
import re
import uuid
from datetime import datetime

import pyotp
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from models.auth import TotpUsage
from models.users import User
from services.auth import throttle
from services.auth.audit import audit
from services.auth.errors import LockedOut, SecondFactorInvalid, SecondFactorRequired
from services.auth.policy import AuthPolicy

STEP_SECONDS = 30
DRIFT_STEPS = 1
_CODE = re.compile(r"^[0-9]{6}$")


def new_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, *, email: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI authenticator apps read (usually from a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step `code` belongs to within the drift window, newest first; None if it matches none."""
    if not _CODE.match(code):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // STEP_SECONDS
    for step in range(current + DRIFT_STEPS, current - DRIFT_STEPS - 1, -1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _key(user_id: uuid.UUID) -> str:
    return f"totp:{user_id}"


async def verify_and_consume(
    session: AsyncSession,
    user: User,
    code: str | None,
    *,
    policy: AuthPolicy,
    now: datetime,
    ip: str | None = None,
) -> None:
    """Accept `code` for `user` (whose `twofa_secret` is set) exactly once, or raise.

    Failures are committed before raising, so call this before making the changes it guards: a wrong
    code must count even though the request fails.
    """
    if not user.twofa_secret:
        raise SecondFactorRequired("two-factor authentication is not set up", code="totp_not_enrolled")
    if not code:
        raise SecondFactorRequired("a TOTP code is required for this action", field="totp_code")
    key = _key(user.id)
    await throttle.serialize(session, key)
    wait = await throttle.seconds_locked(session, [key], now)
    if wait is not None:
        raise LockedOut("too many wrong codes; try again later", retry_after=wait, code="totp_locked")
    step = matching_step(user.twofa_secret, code, now)
    reason = "wrong_code"
    if step is not None:
        consumed = await session.exec(
            insert(TotpUsage)
            .values(user_id=user.id, last_step=step)
            .on_conflict_do_update(
                index_elements=["user_id"],
                set_={"last_step": step},
                where=col(TotpUsage.last_step) < step,
            )
            .returning(col(TotpUsage.user_id))
        )
        if consumed.first() is not None:
            await throttle.reset(session, key)
            return
        reason = "replayed_code"
    locked = await throttle.record_failure(session, key, policy.totp_lockout, now)
    audit(session, "auth.2fa.failed", user_id=user.id, ip=ip, details={"reason": reason})
    if locked:
        audit(session, "auth.2fa.locked", user_id=user.id, ip=ip)
    await session.commit()
    if reason == "replayed_code":
        raise SecondFactorInvalid(
            "this code was already used; wait for the next one", code="totp_replayed", field="totp_code"
        )
    raise SecondFactorInvalid("the TOTP code is not valid", field="totp_code")

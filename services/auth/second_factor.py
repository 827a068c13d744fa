"""The TOTP second factor: enrolment, confirmation and turning it off. Codes themselves are checked
(once each, with lock-out) by `services.auth.totp`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from models.users import User
from services.auth import notices, totp
from services.auth.audit import audit
from services.auth.context import AuthConfig, utcnow
from services.auth.errors import Conflict
from services.auth.password_changes import confirm_current_password
from services.notifications import NotificationEvent


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    secret: str
    otpauth_uri: str


async def totp_enroll(
    session: AsyncSession, cfg: AuthConfig, user: User, *, password: str, ip: str | None
) -> TotpEnrollment:
    """Start enrolment: a fresh secret, not yet enforced until `totp_confirm` sees a valid code.
    Needs the password, so a stolen access token alone can't take over the second factor."""
    await confirm_current_password(session, cfg, user, password, ip)
    if user.twofa_enabled:
        raise Conflict("two-factor authentication is already enabled", code="totp_already_enabled")
    secret = totp.new_secret()
    locked = await session.get(User, user.id, with_for_update=True)
    assert locked is not None
    locked.twofa_secret = secret
    locked.updated_at = utcnow()
    audit(session, "auth.2fa.enroll_started", user_id=user.id, ip=ip)
    await session.commit()
    return TotpEnrollment(
        secret, totp.provisioning_uri(secret, email=user.email, issuer=cfg.policy.totp_issuer)
    )


async def totp_confirm(
    session: AsyncSession, cfg: AuthConfig, user: User, code: str, *, ip: str | None
) -> None:
    """Turn 2FA on with the first valid code from the authenticator (proves the secret was stored)."""
    if user.twofa_enabled:
        raise Conflict("two-factor authentication is already enabled", code="totp_already_enabled")
    if not user.twofa_secret:
        raise Conflict("start enrolment first", code="totp_not_enrolled")
    await totp.verify_and_consume(session, user, code, policy=cfg.policy, now=utcnow(), ip=ip)
    user.twofa_enabled = True
    user.updated_at = utcnow()
    audit(session, "auth.2fa.enabled", user_id=user.id, ip=ip)
    await notices.security(session, NotificationEvent.SECURITY_2FA_ENABLED, user.id, when=utcnow(), ip=ip)
    await session.commit()


async def totp_disable(
    session: AsyncSession, cfg: AuthConfig, user: User, code: str, *, ip: str | None
) -> None:
    """Turn 2FA off; needs a valid, unused code."""
    if not user.twofa_enabled:
        raise Conflict("two-factor authentication is not enabled", code="totp_not_enabled")
    await totp.verify_and_consume(session, user, code, policy=cfg.policy, now=utcnow(), ip=ip)
    user.twofa_enabled = False
    user.twofa_secret = None
    user.updated_at = utcnow()
    audit(session, "auth.2fa.disabled", user_id=user.id, ip=ip)
    await notices.security(session, NotificationEvent.SECURITY_2FA_DISABLED, user.id, when=utcnow(), ip=ip)
    await session.commit()

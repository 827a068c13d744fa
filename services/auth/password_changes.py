"""Password changes: confirming the current password, changing it, and resetting it by an emailed link.

Each function is one transaction on the caller's session: it commits at its end, and raises before
committing anything half-done (except counted failures, which are committed on purpose before raising).
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.auth import AuthSession, PasswordHistory
from models.users import User
from services.auth import notices, throttle
from services.auth.audit import audit
from services.auth.context import LOGIN_STATUSES, AuthConfig, account_key, normalize_email, utcnow
from services.auth.errors import LockedOut, PolicyViolation, TokenInvalid, WrongPassword
from services.auth.hashing import check_policy, hash_password, verify_password
from services.auth.sessions import revoke
from services.notifications import NotificationEvent


async def confirm_current_password(
    session: AsyncSession, cfg: AuthConfig, user: User, password: str, ip: str | None
) -> None:
    """Confirm a sensitive change with the password; wrong guesses count toward the account lock-out.

    Guesses are serialised on the same lock as `login` (per account), and the lock-out and the stored
    hash are read again once it is held: otherwise a burst of parallel guesses would all pass the
    lock-out check before any of them counted, and one carrying the right password would get through.
    """
    key = account_key(user.email)
    await throttle.serialize(session, key)
    await session.refresh(user, ["password_hash"])
    now = utcnow()
    wait = await throttle.seconds_locked(session, [key], now)
    if wait is not None:
        raise LockedOut("too many failed attempts; try again later", retry_after=wait)
    if not await verify_password(user.password_hash, password):
        if await throttle.record_failure(session, key, cfg.policy.account_lockout, now):
            audit(session, "auth.lockout", user_id=user.id, ip=ip, details={"scope": "account"})
        audit(session, "auth.password.confirm_failed", user_id=user.id, ip=ip)
        await session.commit()
        raise WrongPassword("the current password is incorrect", field="current_password")


async def change_password(
    session: AsyncSession,
    cfg: AuthConfig,
    user: User,
    *,
    current_password: str,
    new_password: str,
    keep_session: uuid.UUID,
    ip: str | None,
) -> None:
    """Set a new password (policy, not one of the last N), and sign out every other session.
    The caller has already checked the TOTP code when 2FA is on (`api.auth_deps.require_totp`)."""
    await confirm_current_password(session, cfg, user, current_password, ip)
    check_policy(new_password, "new_password")
    await refuse_recent_password(session, cfg, user, new_password)
    now = utcnow()
    revoked = await set_password(
        session,
        user.id,
        await hash_password(new_password),
        now,
        reason="password_changed",
        keep_session=keep_session,
    )
    audit(session, "auth.password.changed", user_id=user.id, ip=ip, details={"sessions_revoked": revoked})
    await notices.security(
        session, NotificationEvent.SECURITY_PASSWORD_CHANGED, user.id, when=now, ip=ip, how="changed"
    )
    await session.commit()


async def refuse_recent_password(
    session: AsyncSession, cfg: AuthConfig, user: User, new_password: str
) -> None:
    recent = (
        await session.exec(
            select(col(PasswordHistory.password_hash))
            .where(col(PasswordHistory.user_id) == user.id)
            .order_by(col(PasswordHistory.created_at).desc())
            .limit(cfg.policy.password_history)
        )
    ).all()
    for old in {user.password_hash, *recent}:
        if await verify_password(old, new_password):
            raise PolicyViolation(
                f"the new password must differ from your last {cfg.policy.password_history} passwords",
                code="password_reused",
                field="new_password",
            )


async def set_password(
    session: AsyncSession,
    user_id: uuid.UUID,
    hashed: str,
    now: datetime,
    *,
    reason: str,
    keep_session: uuid.UUID | None = None,
) -> int:
    """Store the new hash and history row and revoke the user's sessions (all but `keep_session`);
    returns how many were revoked. The caller audits and commits."""
    locked = await session.get(User, user_id, with_for_update=True)
    assert locked is not None
    locked.password_hash = hashed
    locked.updated_at = now
    session.add(PasswordHistory(user_id=user_id, password_hash=hashed))
    query = select(AuthSession).where(
        col(AuthSession.user_id) == user_id, col(AuthSession.revoked_at).is_(None)
    )
    if keep_session is not None:
        query = query.where(col(AuthSession.id) != keep_session)
    revoked = 0
    for other in (await session.exec(query)).all():
        revoke(other, reason, now)
        revoked += 1
    return revoked


# --- password reset ------------------------------------------------------------------------------


def _password_fingerprint(password_hash: str) -> str:
    """Bound into a reset token: once the password changes (by this token or otherwise) every reset
    token issued before dies, so each is single-use without a table of used tokens."""
    return hashlib.sha256(f"password-reset:{password_hash}".encode()).hexdigest()[:32]


async def request_password_reset(
    session: AsyncSession, cfg: AuthConfig, email: str, *, ip: str
) -> tuple[User, str] | None:
    """A reset token for `email`'s account, or None when nothing is to be sent (no such account, an
    inactive one, or that address already got its share of reset emails). The caller answers the same
    in every case. Too many requests from one client address are refused (`LockedOut`) whatever the
    email, so that refusal reveals nothing either."""
    now = utcnow()
    p = cfg.policy
    ip_key = f"reset-ip:{ip}"[:100]
    await throttle.serialize(session, ip_key)
    wait = await throttle.seconds_locked(session, [ip_key], now)
    if wait is not None:
        await session.rollback()
        raise LockedOut("too many password reset requests; try again later", retry_after=wait)
    await throttle.record_failure(session, ip_key, p.reset_requests_per_ip, now)

    email = normalize_email(email)
    email_key = "reset:" + hashlib.sha256(email.encode()).hexdigest()
    await throttle.serialize(session, email_key)
    user = (await session.exec(select(User).where(col(User.email) == email))).first()
    result: tuple[User, str] | None = None
    if await throttle.seconds_locked(session, [email_key], now) is None:
        await throttle.record_failure(session, email_key, p.reset_emails, now)
        if user is not None and user.status in LOGIN_STATUSES:
            token = cfg.reset_tokens.issue(
                "password_reset",
                user.id,
                now=now,
                ttl=p.reset_token_ttl,
                pwd=_password_fingerprint(user.password_hash),
            )
            result = (user, token)
            await notices.password_reset(session, cfg, user.id, token)
    audit(
        session,
        "auth.password_reset.requested",
        user_id=user.id if user else None,
        ip=ip,
        details={"emailed": result is not None},
    )
    await session.commit()
    return result


async def reset_password(
    session: AsyncSession, cfg: AuthConfig, token: str, new_password: str, *, ip: str | None
) -> User:
    """Set a new password with an emailed reset token (once only, before it expires): the policy and
    history rules apply, every session is revoked, the login lock-out of the account is lifted and the
    email counts as verified."""
    claims = cfg.reset_tokens.decode(token, "password_reset")
    check_policy(new_password, "new_password")
    user = await session.get(User, claims["sub"], with_for_update=True)
    fingerprint = str(claims.get("pwd", ""))
    if (
        user is None
        or user.status not in LOGIN_STATUSES
        or not hmac.compare_digest(fingerprint, _password_fingerprint(user.password_hash))
    ):
        raise TokenInvalid("this reset link was already used or is no longer valid", code="reset_token_used")
    await refuse_recent_password(session, cfg, user, new_password)
    now = utcnow()
    revoked = await set_password(
        session, user.id, await hash_password(new_password), now, reason="password_reset"
    )
    # The token came by email, so whoever holds it controls the address: an account someone opened with
    # another person's address ("pre-hijacking") passes to that person here, every session of the
    # opener revoked.
    user.email_verified = True
    await throttle.reset(session, account_key(user.email))
    audit(session, "auth.password_reset", user_id=user.id, ip=ip, details={"sessions_revoked": revoked})
    await notices.security(
        session, NotificationEvent.SECURITY_PASSWORD_CHANGED, user.id, when=now, ip=ip, how="reset"
    )
    await session.commit()
    return user

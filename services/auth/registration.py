"""Registration, email verification and profile changes.

Each function is one transaction on the caller's session: it commits at its end, and raises before
committing anything half-done.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.auth import PasswordHistory
from models.users import User
from services.auth import notices, throttle
from services.auth.audit import audit
from services.auth.context import AuthConfig, normalize_email, utcnow
from services.auth.errors import TokenInvalid
from services.auth.hashing import check_policy, hash_password


@dataclass(frozen=True, slots=True)
class Registration:
    """`created` is False when the email already had an account: nothing was changed, and the caller
    emails that account's owner instead of answering differently (so the answer reveals nothing).
    `notify_owner` is False once that address got its share of such emails (no mail-bombing through
    repeated sign-ups)."""

    user: User
    created: bool
    notify_owner: bool = False


async def register(
    session: AsyncSession,
    cfg: AuthConfig,
    *,
    email: str,
    password: str,
    first_name: str | None,
    last_name: str | None,
    ip: str | None,
) -> Registration:
    """Create a customer (unverified email, no 2FA) and start their password history; or, when the
    email is taken, change nothing and say so to the caller only."""
    check_policy(password, "password")
    email = normalize_email(email)
    hashed = await hash_password(password)  # either way, so both outcomes take the same time
    existing = (await session.exec(select(User).where(col(User.email) == email))).first()
    if existing is None:
        user = User(email=email, password_hash=hashed, first_name=first_name, last_name=last_name)
        session.add(user)
        try:
            await session.flush()
        except IntegrityError:  # registered concurrently a moment ago
            await session.rollback()
            existing = (await session.exec(select(User).where(col(User.email) == email))).one()
    if existing is not None:
        now = utcnow()
        mail_key = "signup-mail:" + hashlib.sha256(email.encode()).hexdigest()
        await throttle.serialize(session, mail_key)
        notify = await throttle.seconds_locked(session, [mail_key], now) is None
        if notify:
            await throttle.record_failure(session, mail_key, cfg.policy.reset_emails, now)
        audit(
            session, "auth.register.existing_email", user_id=existing.id, ip=ip, details={"emailed": notify}
        )
        if notify:
            await notices.account_exists(session, existing.id)
        await session.commit()
        return Registration(existing, created=False, notify_owner=notify)
    session.add(PasswordHistory(user_id=user.id, password_hash=hashed))
    audit(session, "auth.register", user_id=user.id, ip=ip)
    await notices.verification(session, cfg, user.id, verification_token(cfg, user))
    await session.commit()
    await session.refresh(user)
    return Registration(user, created=True)


def verification_token(cfg: AuthConfig, user: User) -> str:
    """A signed link token bound to the user *and* the address, so it dies if the email changes."""
    return cfg.email_tokens.issue(
        "email_verify", user.id, now=utcnow(), ttl=cfg.policy.email_token_ttl, email=user.email
    )


async def resend_verification(session: AsyncSession, cfg: AuthConfig, user: User) -> None:
    """A fresh verification mail (through the outbox, committed here)."""
    await notices.verification(session, cfg, user.id, verification_token(cfg, user))
    await session.commit()


async def verify_email(session: AsyncSession, cfg: AuthConfig, token: str, *, ip: str | None) -> User:
    claims = cfg.email_tokens.decode(token, "email_verify")
    user = await session.get(User, claims["sub"], with_for_update=True)
    if user is None or user.email != claims.get("email"):
        raise TokenInvalid("the verification link is no longer valid")
    if not user.email_verified:
        user.email_verified = True
        user.updated_at = utcnow()
        audit(session, "auth.email_verified", user_id=user.id, ip=ip)
        await session.commit()
    return user


async def update_profile(
    session: AsyncSession, user: User, changes: dict[str, str | None], *, ip: str | None
) -> User:
    """Change profile fields (names, phone). The caller enforces 2FA for settings changes."""
    for name, value in changes.items():
        setattr(user, name, value)
    user.updated_at = utcnow()
    audit(session, "account.settings.changed", user_id=user.id, ip=ip, details={"fields": sorted(changes)})
    await session.commit()
    await session.refresh(user)
    return user

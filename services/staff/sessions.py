"""Staff console login, TOTP enrolment at first login, session checks with idle timeout, and logout.

A staff login is password + TOTP, always: a staff account without a second factor is sent to enrol one
(an enrolment ticket proves the password was just given) before any session exists. Customers (users
without a staff role) are refused with the same answer as a wrong password. The session cookie holds a
random token whose SHA-256 is the row's key, apart from customers' JWT sessions: a customer's token never
opens the console. Failures count toward the same lock-outs as customer logins (`services.auth.throttle`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.staff import StaffSession
from models.users import User, UserStatus
from services import audit
from services.auth import throttle, totp
from services.auth.context import AuthConfig, ClientInfo, account_key, ip_key, normalize_email, utcnow
from services.auth.errors import InvalidCredentials, LockedOut, SecondFactorInvalid, SecondFactorRequired
from services.auth.hashing import dummy_hash, verify_password
from services.errors import DomainError
from services.staff.permissions import is_staff


class StaffSessionInvalid(DomainError):
    """No console session, or it expired, idled out or was revoked: log in again at /console/login."""

    default_code = "staff_session_invalid"
    status = 401


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """Idle and absolute session lifetimes, and the key that signs enrolment tickets."""

    idle: timedelta
    maximum: timedelta
    ticket_key: bytes

    @classmethod
    def from_secret(cls, secret: str, *, idle_seconds: int, max_seconds: int) -> SessionLimits:
        key = hashlib.sha256(f"staff-enrolment:{secret}".encode()).digest()
        return cls(timedelta(seconds=idle_seconds), timedelta(seconds=max_seconds), key)


@dataclass(frozen=True, slots=True)
class StaffLogin:
    """A login's outcome: either a session (`token`, `csrf_token`) or the need to enrol TOTP first
    (`enrolment_ticket`, `totp_secret`, `otpauth_uri`)."""

    user: User
    token: str | None = None
    csrf_token: str | None = None
    enrolment_ticket: str | None = None
    totp_secret: str | None = None
    otpauth_uri: str | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _sign_ticket(limits: SessionLimits, user_id: uuid.UUID, expires: int) -> str:
    body = f"{user_id}.{expires}"
    sig = hmac.new(limits.ticket_key, body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{sig}"


def _read_ticket(limits: SessionLimits, ticket: str, now: datetime) -> uuid.UUID:
    try:
        user_id, expires, sig = ticket.split(".")
        good = hmac.new(limits.ticket_key, f"{user_id}.{expires}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, sig) or int(expires) < int(now.timestamp()):
            raise ValueError
        return uuid.UUID(user_id)
    except ValueError as e:
        raise InvalidCredentials("the enrolment has expired; log in again", code="enrolment_expired") from e


async def _failed(
    session: AsyncSession, cfg: AuthConfig, email: str, user: User | None, client: ClientInfo, reason: str
) -> None:
    now = utcnow()
    p = cfg.policy
    await throttle.record_failure(session, account_key(email), p.account_lockout, now)
    await throttle.record_failure(session, ip_key(client.ip), p.ip_lockout, now)
    await audit.record(
        session,
        "staff.login.failed",
        actor_id=user.id if user else None,
        actor_type="staff" if user else "anonymous",
        target_type="user" if user else None,
        target_id=user.id if user else None,
        details={"reason": reason},
        ip=client.ip,
    )
    await session.commit()


async def login(
    session: AsyncSession,
    cfg: AuthConfig,
    limits: SessionLimits,
    *,
    email: str,
    password: str,
    totp_code: str | None,
    client: ClientInfo,
) -> StaffLogin:
    """Check password and (if enrolled) TOTP, then open a console session; or start TOTP enrolment."""
    now = utcnow()
    email = normalize_email(email)
    key = account_key(email)
    await throttle.serialize(session, key)
    wait = await throttle.seconds_locked(session, [key, ip_key(client.ip)], now)
    if wait is not None:
        await session.rollback()
        raise LockedOut("too many failed logins; try again later", retry_after=wait)
    user = (await session.exec(select(User).where(col(User.email) == email))).first()
    ok = await verify_password(user.password_hash if user else dummy_hash(), password)
    if user is None or not ok or not is_staff(user.roles) or user.status != UserStatus.ACTIVE:
        reason = "unknown_email" if user is None else "wrong_password" if not ok else "not_active_staff"
        await _failed(session, cfg, email, user, client, reason)
        raise InvalidCredentials("the email or password is incorrect")
    if not user.twofa_enabled:
        secret = totp.new_secret()
        user.twofa_secret = secret
        user.updated_at = now
        await audit.record(
            session, "staff.2fa.enrol_started", actor_id=user.id, actor_type="staff", target_type="user",
            target_id=user.id, ip=client.ip,
        )  # fmt: skip
        await session.commit()
        ticket = _sign_ticket(limits, user.id, int(now.timestamp()) + 600)
        uri = totp.provisioning_uri(secret, email=user.email, issuer=f"{cfg.policy.totp_issuer} staff")
        return StaffLogin(user=user, enrolment_ticket=ticket, totp_secret=secret, otpauth_uri=uri)
    try:
        await totp.verify_and_consume(session, user, totp_code, policy=cfg.policy, now=now, ip=client.ip)
    except (SecondFactorInvalid, SecondFactorRequired) as e:
        await _failed(session, cfg, email, user, client, e.code)
        raise InvalidCredentials(e.detail, code=e.code, field="totp_code") from e
    await throttle.reset(session, key)
    return await _open(session, user, limits, client, now)


async def confirm_enrolment(
    session: AsyncSession,
    cfg: AuthConfig,
    limits: SessionLimits,
    *,
    ticket: str,
    code: str,
    client: ClientInfo,
) -> StaffLogin:
    """Turn TOTP on with the first valid code from the authenticator, and open the session."""
    now = utcnow()
    user = await session.get(User, _read_ticket(limits, ticket, now), with_for_update=True)
    if user is None or not is_staff(user.roles) or user.status != UserStatus.ACTIVE or user.twofa_enabled:
        raise InvalidCredentials("the enrolment has expired; log in again", code="enrolment_expired")
    await totp.verify_and_consume(session, user, code, policy=cfg.policy, now=now, ip=client.ip)
    user.twofa_enabled = True
    user.updated_at = now
    await audit.record(
        session, "staff.2fa.enabled", actor_id=user.id, actor_type="staff", target_type="user",
        target_id=user.id, ip=client.ip,
    )  # fmt: skip
    return await _open(session, user, limits, client, now)


async def _open(
    session: AsyncSession, user: User, limits: SessionLimits, client: ClientInfo, now: datetime
) -> StaffLogin:
    token = secrets.token_urlsafe(32)
    sess = StaffSession(
        user_id=user.id,
        token_hash=token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        ip=client.ip[:64],
        user_agent=client.user_agent[:255] or None,
        created_at=now,
        last_seen_at=now,
        expires_at=now + limits.maximum,
    )
    session.add(sess)
    user.last_login = now
    await audit.record(
        session, "staff.login", actor_id=user.id, actor_type="staff", target_type="user", target_id=user.id,
        details={"session_id": str(sess.id)}, ip=client.ip,
    )  # fmt: skip
    await session.commit()
    return StaffLogin(user=user, token=token, csrf_token=sess.csrf_token)


async def authenticate(
    session: AsyncSession, limits: SessionLimits, token: str | None
) -> tuple[User, StaffSession]:
    """The staff user and session behind a console cookie, sliding its idle timeout; or refuse."""
    if not token:
        raise StaffSessionInvalid("log in to the console")
    now = utcnow()
    sess = (
        await session.exec(select(StaffSession).where(col(StaffSession.token_hash) == token_hash(token)))
    ).first()
    if sess is None or sess.revoked_at is not None or sess.expires_at <= now:
        raise StaffSessionInvalid("log in to the console")
    if sess.last_seen_at is not None and now - sess.last_seen_at > limits.idle:
        sess.revoked_at = now
        await audit.record(
            session, "staff.session.idle_timeout", actor_id=sess.user_id, actor_type="staff",
            target_type="staff_session", target_id=sess.id,
        )  # fmt: skip
        await session.commit()
        raise StaffSessionInvalid("your session timed out; log in again", code="staff_session_idle")
    user = await session.get(User, sess.user_id)
    if user is None or not is_staff(user.roles) or user.status != UserStatus.ACTIVE:
        raise StaffSessionInvalid("log in to the console")
    sess.last_seen_at = now
    await session.commit()
    return user, sess


async def logout(session: AsyncSession, sess: StaffSession, *, ip: str | None) -> None:
    sess.revoked_at = utcnow()
    await audit.record(
        session, "staff.logout", actor_id=sess.user_id, actor_type="staff", target_type="staff_session",
        target_id=sess.id, ip=ip,
    )  # fmt: skip
    await session.commit()


async def revoke_all(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """End every console session of `user_id` (disabled, roles changed, TOTP reset); the caller commits."""
    await session.exec(
        update(StaffSession)
        .where(col(StaffSession.user_id) == user_id, col(StaffSession.revoked_at).is_(None))
        .values(revoked_at=now)
    )

"""Login, refresh-token rotation, access-token authentication, logout and the list of sessions.

Each function is one transaction on the caller's session: it commits at its end, and raises before
committing anything half-done (except counted failures, which are committed on purpose before raising).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.auth import AuthSession, KnownDevice
from models.users import User
from services.auth import notices, throttle, totp
from services.auth.audit import audit, log_event
from services.auth.context import (
    LOGIN_STATUSES,
    AuthConfig,
    ClientInfo,
    account_key,
    ip_key,
    normalize_email,
    utcnow,
)
from services.auth.errors import (
    AccountDisabled,
    InvalidCredentials,
    LockedOut,
    NotFound,
    SecondFactorInvalid,
    TokenInvalid,
)
from services.auth.hashing import dummy_hash, verify_password
from services.auth.tokens import token_hash
from services.notifications import NotificationEvent


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: User
    tokens: TokenPair
    new_device: bool


def issue_pair(
    cfg: AuthConfig, user_id: uuid.UUID, sess: AuthSession, now: datetime
) -> tuple[TokenPair, str]:
    """A fresh access/refresh pair for `sess`, and the hash of the refresh token to store on it."""
    p = cfg.policy
    access = cfg.tokens.issue("access", user_id, now=now, ttl=p.access_ttl, sid=str(sess.id))
    refresh = cfg.tokens.issue(
        "refresh", user_id, now=now, ttl=p.refresh_ttl, sid=str(sess.id), gen=sess.generation
    )
    pair = TokenPair(
        access, refresh, int(p.access_ttl.total_seconds()), int(p.refresh_ttl.total_seconds()), sess.id
    )
    return pair, token_hash(refresh)


async def _login_failed(
    session: AsyncSession,
    cfg: AuthConfig,
    *,
    email: str,
    user: User | None,
    client: ClientInfo,
    now: datetime,
    reason: str,
) -> None:
    """Count the failure against the account and the address, audit it, and commit."""
    p = cfg.policy
    acct_locked = await throttle.record_failure(session, account_key(email), p.account_lockout, now)
    ip_locked = await throttle.record_failure(session, ip_key(client.ip), p.ip_lockout, now)
    user_id = user.id if user else None
    audit(session, "auth.login.failed", user_id=user_id, ip=client.ip, details={"reason": reason})
    if acct_locked:
        audit(session, "auth.lockout", user_id=user_id, ip=client.ip, details={"scope": "account"})
    if ip_locked:
        audit(session, "auth.lockout", user_id=user_id, ip=client.ip, details={"scope": "ip"})
    if user_id is not None:
        await notices.failed_logins(session, user_id, now=now, ip=client.ip)
    await session.commit()


async def login(
    session: AsyncSession,
    cfg: AuthConfig,
    *,
    email: str,
    password: str,
    totp_code: str | None,
    client: ClientInfo,
) -> LoginResult:
    """Check the password (and the TOTP code when 2FA is on), then open a session.

    Locked accounts and addresses are refused before the password is even looked at, with the same
    answer whether or not the email exists.
    """
    now = utcnow()
    email = normalize_email(email)
    acct_key = account_key(email)
    await throttle.serialize(session, acct_key)
    wait = await throttle.seconds_locked(session, [acct_key, ip_key(client.ip)], now)
    if wait is not None:
        await session.rollback()
        log_event("auth.login.blocked", user_id=None, ip=client.ip, details={"retry_after": wait})
        raise LockedOut("too many failed logins; try again later", retry_after=wait)

    user = (await session.exec(select(User).where(col(User.email) == email))).first()
    ok = await verify_password(user.password_hash if user else dummy_hash(), password)
    if user is None or not ok:
        await _login_failed(
            session,
            cfg,
            email=email,
            user=user,
            client=client,
            now=now,
            reason="unknown_email" if user is None else "wrong_password",
        )
        raise InvalidCredentials("the email or password is incorrect")
    if user.status not in LOGIN_STATUSES:
        audit(session, "auth.login.refused", user_id=user.id, ip=client.ip, details={"status": user.status})
        await session.commit()
        raise AccountDisabled("this account is not active; contact support")
    if user.twofa_enabled:
        if not totp_code:
            await session.rollback()
            raise InvalidCredentials("a TOTP code is required", code="totp_required", field="totp_code")
        try:
            await totp.verify_and_consume(session, user, totp_code, policy=cfg.policy, now=now, ip=client.ip)
        except SecondFactorInvalid as e:
            await _login_failed(session, cfg, email=email, user=user, client=client, now=now, reason=e.code)
            raise InvalidCredentials(e.detail, code=e.code, field="totp_code") from e

    await throttle.reset(session, acct_key)
    new_device = await _remember_device(session, user, client, now)
    sess = AuthSession(
        user_id=user.id,
        refresh_token_hash="",
        device_fingerprint=client.fingerprint,
        user_agent=client.user_agent[:255] or None,
        ip=client.ip[:64],
        expires_at=now + cfg.policy.refresh_ttl,
    )
    pair, refresh_hash = issue_pair(cfg, user.id, sess, now)
    sess.refresh_token_hash = refresh_hash
    session.add(sess)
    user.last_login = now
    audit(
        session,
        "auth.login",
        user_id=user.id,
        ip=client.ip,
        details={"session_id": str(sess.id), "new_device": new_device},
    )
    if new_device:
        audit(
            session,
            "auth.new_device",
            user_id=user.id,
            ip=client.ip,
            details={"fingerprint": client.fingerprint, "user_agent": client.user_agent[:255]},
        )
        await notices.security(
            session,
            NotificationEvent.SECURITY_NEW_DEVICE,
            user.id,
            when=now,
            ip=client.ip,
            user_agent=client.user_agent[:255] or "unknown",
        )
    await session.commit()
    return LoginResult(user=user, tokens=pair, new_device=new_device)


async def _remember_device(session: AsyncSession, user: User, client: ClientInfo, now: datetime) -> bool:
    """Record the device; True if it is new *and* the user had logged in before (the very first
    login is not news to anyone)."""
    known = (
        await session.exec(select(col(KnownDevice.fingerprint)).where(col(KnownDevice.user_id) == user.id))
    ).all()
    if client.fingerprint in known:
        await session.exec(
            update(KnownDevice)
            .where(col(KnownDevice.user_id) == user.id, col(KnownDevice.fingerprint) == client.fingerprint)
            .values(last_seen_at=now)
        )
        return False
    session.add(
        KnownDevice(
            user_id=user.id, fingerprint=client.fingerprint, user_agent=client.user_agent[:255] or None
        )
    )
    return bool(known)


async def refresh(session: AsyncSession, cfg: AuthConfig, token: str, *, client: ClientInfo) -> TokenPair:
    """Rotate the pair. A refresh token that was already rotated is a replay: the whole session (every
    token descended from that login) is revoked, whoever holds it."""
    now = utcnow()
    claims = cfg.tokens.decode(token, "refresh")
    sess = await session.get(AuthSession, claims["sid"], with_for_update=True)
    if sess is None or sess.user_id != claims["sub"]:
        raise TokenInvalid("the refresh token is not valid")
    if sess.revoked_at is not None or sess.expires_at <= now:
        raise TokenInvalid("this session has ended; log in again", code="session_revoked")
    if token_hash(token) != sess.refresh_token_hash:
        sess.revoked_at = now
        sess.revoked_reason = "refresh_reuse"
        audit(
            session,
            "auth.refresh.reuse_detected",
            user_id=sess.user_id,
            ip=client.ip,
            details={"session_id": str(sess.id)},
        )
        await session.commit()
        raise TokenInvalid(
            "refresh token reuse detected; the session is revoked", code="refresh_token_reused"
        )
    user = await session.get(User, sess.user_id)
    if user is None or user.status not in LOGIN_STATUSES:
        raise AccountDisabled("this account is not active; contact support")
    sess.generation += 1
    sess.last_used_at = now
    sess.expires_at = now + cfg.policy.refresh_ttl
    pair, sess.refresh_token_hash = issue_pair(cfg, user.id, sess, now)
    audit(
        session,
        "auth.refresh",
        user_id=user.id,
        ip=client.ip,
        details={"session_id": str(sess.id), "generation": sess.generation},
    )
    await session.commit()
    return pair


# Built once: the statement every authenticated request runs (building the expression per request was a
# visible share of its CPU time; the compiled form is cached by SQLAlchemy either way).
_LIVE = (
    col(AuthSession.id) == bindparam("sid"),
    col(User.id) == bindparam("sub"),
    col(AuthSession.revoked_at).is_(None),
)
_LIVE_SESSION = (
    select(User, AuthSession).join(AuthSession, col(AuthSession.user_id) == col(User.id)).where(*_LIVE)
)


async def authenticate(
    session: AsyncSession, cfg: AuthConfig, token: str, *, claims: dict[str, Any] | None = None
) -> tuple[User, AuthSession]:
    """The user and live session behind an access token. One query; revocation is effective at once.

    `claims`: what `cfg.tokens.decode(token, "access")` returned earlier in the same request (the API's
    rate-limit middleware verifies the token first); the signature is then not verified twice."""
    if claims is None:
        claims = cfg.tokens.decode(token, "access")
    row = (await session.exec(_LIVE_SESSION, params={"sid": claims["sid"], "sub": claims["sub"]})).first()
    if row is None:
        raise TokenInvalid("this session has ended; log in again", code="session_revoked")
    user, sess = row
    if user.status not in LOGIN_STATUSES:
        raise AccountDisabled("this account is not active; contact support")
    return user, sess


@dataclass(frozen=True, slots=True)
class Reader:
    """Who an access token belongs to, for routes that only read (`authenticate_reader`)."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    email_verified: bool


# The same checks as `_LIVE_SESSION`, as four columns instead of two ORM entities.
_LIVE_READER = (
    select(col(User.id), col(AuthSession.id), col(User.email_verified), col(User.status))
    .join(AuthSession, col(AuthSession.user_id) == col(User.id))
    .where(*_LIVE)
)


async def authenticate_reader(
    conn: AsyncConnection, cfg: AuthConfig, token: str, *, claims: dict[str, Any] | None = None
) -> Reader:
    """`authenticate` for routes that only read, on a plain connection: the same one query and the same
    refusals (revocation effective at once), without loading the user and session as ORM objects.

    `make bench BENCH=api` measured the ORM session's share of an authenticated read: its own
    checkout, BEGIN, the two entities' loading and ROLLBACK cost about as much as the route's work."""
    if claims is None:
        claims = cfg.tokens.decode(token, "access")
    row = (await conn.execute(_LIVE_READER, {"sid": claims["sid"], "sub": claims["sub"]})).first()
    if row is None:
        raise TokenInvalid("this session has ended; log in again", code="session_revoked")
    if row[3] not in LOGIN_STATUSES:
        raise AccountDisabled("this account is not active; contact support")
    return Reader(user_id=row[0], session_id=row[1], email_verified=bool(row[2]))


def revoke(sess: AuthSession, reason: str, now: datetime) -> None:
    sess.revoked_at = now
    sess.revoked_reason = reason


async def logout(session: AsyncSession, user: User, session_id: uuid.UUID, *, ip: str | None) -> None:
    """End the session: its access token stops working at once, its refresh token can't be used."""
    await revoke_session(session, user, session_id, ip=ip, reason="logout")


async def list_sessions(session: AsyncSession, user: User) -> list[AuthSession]:
    rows = await session.exec(
        select(AuthSession)
        .where(
            col(AuthSession.user_id) == user.id,
            col(AuthSession.revoked_at).is_(None),
            col(AuthSession.expires_at) > utcnow(),
        )
        .order_by(col(AuthSession.created_at).desc())
    )
    return list(rows.all())


async def revoke_session(
    session: AsyncSession, user: User, session_id: uuid.UUID, *, ip: str | None, reason: str = "revoked"
) -> None:
    """Revoke one of the user's own sessions; anyone else's (or an ended one) is `NotFound`."""
    sess = await session.get(AuthSession, session_id, with_for_update=True)
    if sess is None or sess.user_id != user.id or sess.revoked_at is not None:
        raise NotFound("no such session")
    revoke(sess, reason, utcnow())
    audit(
        session,
        "auth.logout" if reason == "logout" else "auth.session.revoked",
        user_id=user.id,
        ip=ip,
        details={"session_id": str(session_id)},
    )
    if reason != "logout":
        await notices.security(
            session, NotificationEvent.SECURITY_SESSION_REVOKED, user.id, when=utcnow(), ip=ip
        )
    await session.commit()

"""Accounts and sessions: register, verify email, login, refresh, logout, sessions, password and 2FA changes.

Each function is one transaction on the caller's session: it commits at its end, and raises before
committing anything half-done (except counted failures, which are committed on purpose before raising).
Passwords are hashed and verified in a worker thread: argon2id is deliberately slow, and the event loop
must keep serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from config import Settings
from models.auth import AuthSession, KnownDevice, PasswordHistory
from models.users import User, UserStatus
from services import passwords
from services.auth import throttle, totp
from services.auth.audit import audit, log_event
from services.auth.errors import (
    AccountDisabled,
    Conflict,
    InvalidCredentials,
    LockedOut,
    NotFound,
    PolicyViolation,
    SecondFactorInvalid,
    TokenInvalid,
    WrongPassword,
)
from services.auth.policy import AuthPolicy
from services.auth.tokens import TokenCodec, token_hash

# Statuses that may log in. FROZEN customers still sign in to see balances; trading checks its own rules.
LOGIN_STATUSES = {UserStatus.ACTIVE.value, UserStatus.FROZEN.value}


def utcnow() -> datetime:
    return datetime.now(UTC)


def normalize_email(email: str) -> str:
    """Emails are case-insensitive here: stored and compared lower-cased, surrounding spaces dropped."""
    return email.strip().lower()


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """What the auth functions need besides a database session."""

    policy: AuthPolicy
    tokens: TokenCodec
    email_tokens: TokenCodec
    reset_tokens: TokenCodec

    @classmethod
    def from_settings(cls, settings: Settings, policy: AuthPolicy | None = None) -> AuthConfig:
        policy = policy or AuthPolicy()
        return cls(
            policy=policy,
            tokens=TokenCodec(settings.jwt_secret, policy.issuer, policy.audience),
            # Its own secret and audience: a leaked verification link can never pass as a login token.
            # The key is derived (SHA-256) so any configured secret yields a full-length HS256 key.
            email_tokens=TokenCodec(
                hashlib.sha256(f"email-verify:{settings.email_token_secret}".encode()).digest(),
                policy.issuer,
                f"{policy.audience}:email",
            ),
            # Likewise for password-reset links: their own key and audience.
            reset_tokens=TokenCodec(
                hashlib.sha256(f"password-reset:{settings.email_token_secret}".encode()).digest(),
                policy.issuer,
                f"{policy.audience}:password-reset",
            ),
        )


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Where a request comes from. The device fingerprint is SHA-256 of the User-Agent and the
    client-chosen `X-Device-Id` (an app install id / browser-stored random id); either may be missing."""

    ip: str
    user_agent: str = ""
    device_id: str = ""

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.user_agent}\n{self.device_id}".encode()).hexdigest()


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


@cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so both cases cost the same time."""
    return passwords.hash_password("timing-equaliser-Aa1!")


async def _hash(password: str) -> str:
    return await asyncio.to_thread(passwords.hash_password, password)


async def _verify(password_hash: str, password: str) -> bool:
    return await asyncio.to_thread(passwords.verify_password, password_hash, password)


def _check_policy(password: str, field: str) -> None:
    try:
        passwords.check_policy(password)
    except passwords.WeakPassword as e:
        raise PolicyViolation(str(e), code="weak_password", field=field) from e


def _pair(cfg: AuthConfig, user_id: uuid.UUID, sess: AuthSession, now: datetime) -> tuple[TokenPair, str]:
    p = cfg.policy
    access = cfg.tokens.issue("access", user_id, now=now, ttl=p.access_ttl, sid=str(sess.id))
    refresh = cfg.tokens.issue(
        "refresh", user_id, now=now, ttl=p.refresh_ttl, sid=str(sess.id), gen=sess.generation
    )
    pair = TokenPair(
        access, refresh, int(p.access_ttl.total_seconds()), int(p.refresh_ttl.total_seconds()), sess.id
    )
    return pair, token_hash(refresh)


# --- registration and email verification -------------------------------------------------------------


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
    _check_policy(password, "password")
    email = normalize_email(email)
    hashed = await _hash(password)  # either way, so both outcomes take the same time
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
        await session.commit()
        return Registration(existing, created=False, notify_owner=notify)
    session.add(PasswordHistory(user_id=user.id, password_hash=hashed))
    audit(session, "auth.register", user_id=user.id, ip=ip)
    await session.commit()
    await session.refresh(user)
    return Registration(user, created=True)


def verification_token(cfg: AuthConfig, user: User) -> str:
    """A signed link token bound to the user *and* the address, so it dies if the email changes."""
    return cfg.email_tokens.issue(
        "email_verify", user.id, now=utcnow(), ttl=cfg.policy.email_token_ttl, email=user.email
    )


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


# --- login, refresh, logout -------------------------------------------------------------------------


def _account_key(email: str) -> str:
    return "acct:" + hashlib.sha256(email.encode()).hexdigest()


def _ip_key(ip: str) -> str:
    return f"ip:{ip}"[:100]


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
    acct_locked = await throttle.record_failure(session, _account_key(email), p.account_lockout, now)
    ip_locked = await throttle.record_failure(session, _ip_key(client.ip), p.ip_lockout, now)
    user_id = user.id if user else None
    audit(session, "auth.login.failed", user_id=user_id, ip=client.ip, details={"reason": reason})
    if acct_locked:
        audit(session, "auth.lockout", user_id=user_id, ip=client.ip, details={"scope": "account"})
    if ip_locked:
        audit(session, "auth.lockout", user_id=user_id, ip=client.ip, details={"scope": "ip"})
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
    acct_key = _account_key(email)
    await throttle.serialize(session, acct_key)
    wait = await throttle.seconds_locked(session, [acct_key, _ip_key(client.ip)], now)
    if wait is not None:
        await session.rollback()
        log_event("auth.login.blocked", user_id=None, ip=client.ip, details={"retry_after": wait})
        raise LockedOut("too many failed logins; try again later", retry_after=wait)

    user = (await session.exec(select(User).where(col(User.email) == email))).first()
    ok = await _verify(user.password_hash if user else _dummy_hash(), password)
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
    pair, refresh_hash = _pair(cfg, user.id, sess, now)
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
    pair, sess.refresh_token_hash = _pair(cfg, user.id, sess, now)
    audit(
        session,
        "auth.refresh",
        user_id=user.id,
        ip=client.ip,
        details={"session_id": str(sess.id), "generation": sess.generation},
    )
    await session.commit()
    return pair


async def authenticate(session: AsyncSession, cfg: AuthConfig, token: str) -> tuple[User, AuthSession]:
    """The user and live session behind an access token. One query; revocation is effective at once."""
    claims = cfg.tokens.decode(token, "access")
    row = (
        await session.exec(
            select(User, AuthSession)
            .join(AuthSession, col(AuthSession.user_id) == col(User.id))
            .where(
                col(AuthSession.id) == claims["sid"],
                col(User.id) == claims["sub"],
                col(AuthSession.revoked_at).is_(None),
            )
        )
    ).first()
    if row is None:
        raise TokenInvalid("this session has ended; log in again", code="session_revoked")
    user, sess = row
    if user.status not in LOGIN_STATUSES:
        raise AccountDisabled("this account is not active; contact support")
    return user, sess


def _revoke(sess: AuthSession, reason: str, now: datetime) -> None:
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
    _revoke(sess, reason, utcnow())
    audit(
        session,
        "auth.logout" if reason == "logout" else "auth.session.revoked",
        user_id=user.id,
        ip=ip,
        details={"session_id": str(session_id)},
    )
    await session.commit()


# --- password and second factor ----------------------------------------------------------------------


async def _check_current_password(
    session: AsyncSession, cfg: AuthConfig, user: User, password: str, ip: str | None
) -> None:
    """Confirm a sensitive change with the password; wrong guesses count toward the account lock-out.

    Guesses are serialised on the same lock as `login` (per account), and the lock-out and the stored
    hash are read again once it is held: otherwise a burst of parallel guesses would all pass the
    lock-out check before any of them counted, and one carrying the right password would get through.
    """
    key = _account_key(user.email)
    await throttle.serialize(session, key)
    await session.refresh(user, ["password_hash"])
    now = utcnow()
    wait = await throttle.seconds_locked(session, [key], now)
    if wait is not None:
        raise LockedOut("too many failed attempts; try again later", retry_after=wait)
    if not await _verify(user.password_hash, password):
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
    await _check_current_password(session, cfg, user, current_password, ip)
    _check_policy(new_password, "new_password")
    await _refuse_recent_password(session, cfg, user, new_password)
    now = utcnow()
    revoked = await _set_password(
        session, user.id, await _hash(new_password), now, reason="password_changed", keep_session=keep_session
    )
    audit(session, "auth.password.changed", user_id=user.id, ip=ip, details={"sessions_revoked": revoked})
    await session.commit()


async def _refuse_recent_password(
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
        if await _verify(old, new_password):
            raise PolicyViolation(
                f"the new password must differ from your last {cfg.policy.password_history} passwords",
                code="password_reused",
                field="new_password",
            )


async def _set_password(
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
        _revoke(other, reason, now)
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
    _check_policy(new_password, "new_password")
    user = await session.get(User, claims["sub"], with_for_update=True)
    fingerprint = str(claims.get("pwd", ""))
    if (
        user is None
        or user.status not in LOGIN_STATUSES
        or not hmac.compare_digest(fingerprint, _password_fingerprint(user.password_hash))
    ):
        raise TokenInvalid("this reset link was already used or is no longer valid", code="reset_token_used")
    await _refuse_recent_password(session, cfg, user, new_password)
    now = utcnow()
    revoked = await _set_password(session, user.id, await _hash(new_password), now, reason="password_reset")
    # The token came by email, so whoever holds it controls the address: an account someone opened with
    # another person's address ("pre-hijacking") passes to that person here, every session of the
    # opener revoked.
    user.email_verified = True
    await throttle.reset(session, _account_key(user.email))
    audit(session, "auth.password_reset", user_id=user.id, ip=ip, details={"sessions_revoked": revoked})
    await session.commit()
    return user


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    secret: str
    otpauth_uri: str


async def totp_enroll(
    session: AsyncSession, cfg: AuthConfig, user: User, *, password: str, ip: str | None
) -> TotpEnrollment:
    """Start enrolment: a fresh secret, not yet enforced until `totp_confirm` sees a valid code.
    Needs the password, so a stolen access token alone can't take over the second factor."""
    await _check_current_password(session, cfg, user, password, ip)
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
    await session.commit()


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

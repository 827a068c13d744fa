"""Authentication state: login sessions (refresh-token families), password history, known devices,
login throttling and TOTP replay protection (docs/architecture.md §7).

Secrets are never stored in the clear: refresh tokens as SHA-256, passwords as argon2id, device
fingerprints as SHA-256. Throttle keys for accounts hash the email so that probing unknown addresses
leaves no personal data behind.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Index, Integer, String, Uuid
from sqlmodel import Field, SQLModel

from models.columns import timestamp


class AuthSession(SQLModel, table=True):
    """One login on one device: the family of refresh tokens that login rotates through.

    Only the newest refresh token's hash is kept; an older token of the same family (the session id is
    inside the signed token) is a replay, and revokes the whole session. Access tokens carry the session
    id and are checked against `revoked_at` on every request, so logout takes effect at once.
    """

    __tablename__ = "auth_sessions"
    __table_args__ = (Index("ix_auth_sessions_user_active", "user_id", "revoked_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), nullable=False))
    refresh_token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    generation: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    device_fingerprint: str = Field(max_length=64)
    user_agent: str | None = Field(default=None, max_length=255)
    ip: str | None = Field(default=None, max_length=64)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    last_used_at: datetime | None = Field(default=None, sa_column=timestamp())
    expires_at: datetime = Field(sa_column=timestamp(now=False))
    revoked_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    revoked_reason: str | None = Field(default=None, max_length=30)


class PasswordHistory(SQLModel, table=True):
    """Every password a user has had (argon2id), newest last; the last five can't be chosen again."""

    __tablename__ = "password_history"
    __table_args__ = (Index("ix_password_history_user_created", "user_id", "created_at"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), nullable=False))
    password_hash: str = Field(max_length=255)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class KnownDevice(SQLModel, table=True):
    """Device fingerprints a user has logged in from; a login from any other raises a security alert."""

    __tablename__ = "known_devices"

    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), primary_key=True))
    fingerprint: str = Field(sa_column=Column(String(64), primary_key=True))
    user_agent: str | None = Field(default=None, max_length=255)
    first_seen_at: datetime | None = Field(default=None, sa_column=timestamp())
    last_seen_at: datetime | None = Field(default=None, sa_column=timestamp())


class AuthThrottle(SQLModel, table=True):
    """Failure counter and lock for one key: `acct:<sha256(email)>`, `ip:<address>` or `totp:<user id>`.

    In PostgreSQL rather than process memory so that every API process sees the same lock.
    """

    __tablename__ = "auth_throttle"
    __table_args__ = (CheckConstraint("failures >= 0", name="ck_auth_throttle_failures"),)

    key: str = Field(sa_column=Column(String(100), primary_key=True))
    failures: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default="0"))
    last_failure_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    locked_until: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class TotpUsage(SQLModel, table=True):
    """The last TOTP time step accepted per user: a code for that step or an earlier one is a replay."""

    __tablename__ = "totp_usage"

    user_id: uuid.UUID = Field(sa_column=Column(Uuid(), ForeignKey("users.id"), primary_key=True))
    last_step: int = Field(sa_column=Column(BigInteger, nullable=False))


# --- API schemas --------------------------------------------------------------------------------------

# Deliberately loose (one @, a dot in the domain): the verification email is the real check.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# argon2 input is capped so a megabyte "password" can't be used to burn CPU.
PASSWORD_MAX = 128
TOTP_PATTERN = r"^[0-9]{6}$"


class RegisterRequest(SQLModel):
    email: str = Field(max_length=254, schema_extra={"pattern": EMAIL_PATTERN})
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)


class UserPublic(SQLModel):
    id: uuid.UUID
    email: str
    email_verified: bool
    twofa_enabled: bool
    kyc_tier: int
    status: str
    roles: list[str]
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    created_at: datetime | None = None


class ProfileUpdate(SQLModel):
    """Only the fields present are changed; `null` clears one."""

    first_name: str | None = Field(default=None, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    phone: str | None = Field(default=None, max_length=20, schema_extra={"pattern": r"^\+?[0-9 ]{6,20}$"})


class LoginRequest(SQLModel):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    totp_code: str | None = Field(default=None, schema_extra={"pattern": TOTP_PATTERN})


class RefreshRequest(SQLModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class TokenResponse(SQLModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_expires_in: int
    session_id: uuid.UUID


class VerifyEmailRequest(SQLModel):
    token: str = Field(min_length=1, max_length=4096)


class EmailQueued(SQLModel):
    status: str = "queued"


class Accepted(SQLModel):
    """The same answer whatever the outcome, so it reveals nothing about which accounts exist."""

    status: str = "accepted"
    detail: str


class PasswordResetRequest(SQLModel):
    email: str = Field(max_length=254, schema_extra={"pattern": EMAIL_PATTERN})


class PasswordResetConfirm(SQLModel):
    token: str = Field(min_length=1, max_length=4096)
    new_password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class SessionPublic(SQLModel):
    id: uuid.UUID
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class ChangePasswordRequest(SQLModel):
    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class TotpEnrollRequest(SQLModel):
    password: str = Field(min_length=1, max_length=PASSWORD_MAX)


class TotpEnrollResponse(SQLModel):
    secret: str
    otpauth_uri: str


class TotpCodeRequest(SQLModel):
    code: str = Field(schema_extra={"pattern": TOTP_PATTERN})


class TotpStatus(SQLModel):
    enabled: bool

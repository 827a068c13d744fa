"""What every auth function shares: its configuration, where a request comes from, who may log in,
and the throttle keys of an account and a client address."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from config import Settings
from models.users import UserStatus
from services.auth.policy import AuthPolicy
from services.auth.tokens import TokenCodec

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
    # Where customers reach the API: the links in verification and reset mails.
    public_base_url: str = ""

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
            public_base_url=settings.public_base_url,
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


def account_key(email: str) -> str:
    """The throttle key of an account: failed logins and password confirmations count here."""
    return "acct:" + hashlib.sha256(email.encode()).hexdigest()


def ip_key(ip: str) -> str:
    """The throttle key of a client address."""
    return f"ip:{ip}"[:100]

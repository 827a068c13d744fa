"""Customer authentication: passwords, sessions and refresh-token families, email verification,
TOTP second factor, lock-out. No HTTP here; `api/routes/auth.py` and `api/auth_deps.py` are the edge."""

from services.auth.context import AuthConfig, ClientInfo
from services.auth.errors import (
    AccountDisabled,
    AuthError,
    Conflict,
    InvalidCredentials,
    LockedOut,
    NotFound,
    PolicyViolation,
    SecondFactorInvalid,
    SecondFactorRequired,
    TokenInvalid,
    WrongPassword,
)
from services.auth.policy import AuthPolicy, LockoutPolicy
from services.auth.second_factor import TotpEnrollment
from services.auth.sessions import LoginResult, TokenPair
from services.auth.tokens import TokenCodec

__all__ = [
    "AccountDisabled",
    "AuthConfig",
    "AuthError",
    "AuthPolicy",
    "ClientInfo",
    "Conflict",
    "InvalidCredentials",
    "LockedOut",
    "LockoutPolicy",
    "LoginResult",
    "NotFound",
    "PolicyViolation",
    "SecondFactorInvalid",
    "SecondFactorRequired",
    "TokenCodec",
    "TokenInvalid",
    "TokenPair",
    "TotpEnrollment",
    "WrongPassword",
]

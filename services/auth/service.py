"""The auth functions under one name, for callers that import `services.auth.service` as a whole.

The functions live in one module per concept: `registration` (sign-up, email verification, profile),
`sessions` (login, refresh, authenticate, logout, session list), `password_changes` (change and reset)
and `second_factor` (TOTP enrolment); `context` holds what they share. New code imports those modules.
"""

from services.auth.context import LOGIN_STATUSES, AuthConfig, ClientInfo, normalize_email, utcnow
from services.auth.password_changes import change_password, request_password_reset, reset_password
from services.auth.registration import (
    Registration,
    register,
    update_profile,
    verification_token,
    verify_email,
)
from services.auth.second_factor import TotpEnrollment, totp_confirm, totp_disable, totp_enroll
from services.auth.sessions import (
    LoginResult,
    TokenPair,
    authenticate,
    list_sessions,
    login,
    logout,
    refresh,
    revoke_session,
)

__all__ = [
    "LOGIN_STATUSES",
    "AuthConfig",
    "ClientInfo",
    "LoginResult",
    "Registration",
    "TokenPair",
    "TotpEnrollment",
    "authenticate",
    "change_password",
    "list_sessions",
    "login",
    "logout",
    "normalize_email",
    "refresh",
    "register",
    "request_password_reset",
    "reset_password",
    "revoke_session",
    "totp_confirm",
    "totp_disable",
    "totp_enroll",
    "update_profile",
    "utcnow",
    "verification_token",
    "verify_email",
]

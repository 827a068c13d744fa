"""The auth domain's errors. Each class carries its HTTP status; the API's one `DomainError` handler
(`api/errors.py`) turns them into problem documents. `code` is the stable machine name clients and tests
match on, `field` names the input at fault."""

from __future__ import annotations

from services.errors import DomainError


class AuthError(DomainError):
    """Base class; never raised itself."""

    default_code = "auth_error"


class InvalidCredentials(AuthError):
    """Login refused. The message never says whether the email exists; the client asks the user again."""

    default_code = "invalid_credentials"
    status = 401

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"}


class TokenInvalid(AuthError):
    """A token is malformed, tampered with, expired, of the wrong type, or its session was revoked.

    The client logs in again."""

    default_code = "invalid_token"
    status = 401

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class LockedOut(AuthError):
    """Too many failures for this account, address or second factor: retry after `retry_after` seconds."""

    default_code = "locked_out"
    status = 429

    def __init__(self, detail: str, *, retry_after: int, code: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class SecondFactorRequired(AuthError):
    """The action needs a TOTP code (or, when 2FA is mandatory for it, 2FA enrolment first)."""

    default_code = "totp_required"
    status = 403


class SecondFactorInvalid(AuthError):
    """The TOTP code is wrong, outside the time window, or was already used once: ask for a fresh one."""

    default_code = "totp_invalid"
    status = 403


class WrongPassword(AuthError):
    """The current password given to confirm a sensitive change is wrong."""

    default_code = "wrong_password"
    status = 403


class AccountDisabled(AuthError):
    """The account is suspended or closed; only support can reopen it."""

    default_code = "account_disabled"
    status = 403


class Conflict(AuthError):
    """The request contradicts the current state (email taken, 2FA already on …); nothing was changed."""

    default_code = "conflict"
    status = 409


class PolicyViolation(AuthError):
    """The input is well-formed but breaks a rule (password policy, reuse): show `detail` to the user."""

    default_code = "policy_violation"
    status = 422


class NotFound(AuthError):
    """No such resource for this user (another user's resource is reported the same way)."""

    default_code = "not_found"
    status = 404

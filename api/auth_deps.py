"""Reusable authentication and authorisation for routes.

    from api.auth_deps import CurrentUser, VerifiedUser, require_role, require_totp, TotpCode, RequireTotp

    @router.get("/things")
    async def things(user: CurrentUser) -> ...: ...               # any logged-in customer or staff

    @router.post("/withdrawals", dependencies=[RequireTotp, WithdrawalRateLimit])  # 2FA always (§7)
    async def withdraw(user: VerifiedUser, ...) -> ...: ...

    @router.post("/orders")
    async def create_order(request: Request, body: ..., user: CurrentUser, session: SessionDep,
                           totp_code: TotpCode = None):
        if notional_gbp > 10_000:                                   # 2FA only above £10k (§7)
            await require_totp(request, session, user, totp_code)
        ...

    @router.post("/admin/approvals/{id}", dependencies=[Depends(require_role("approver"))])

Access tokens are checked against the sessions table on every request, so logout and revocation take
effect at once. The authenticated user id is put on `request.state.user_id` for the access log.
Auth-domain errors (`services.auth.AuthError`) are `DomainError`s: `api/errors.py` answers them.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import ReadConnection, SessionDep
from api.errors import Problem, ProblemError
from models.users import User
from services.auth import (
    AuthConfig,
    ClientInfo,
    SecondFactorInvalid,
    SecondFactorRequired,
    TokenInvalid,
)
from services.auth import sessions as auth_sessions
from services.auth import totp as totp_service
from services.auth.context import utcnow

_bearer = HTTPBearer(auto_error=False, description="Access token from `POST /api/v1/auth/login`.")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries declaring the problem-details body for `statuses`."""
    content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {s: {"model": Problem, "content": content, "description": "problem details"} for s in statuses}


def _auth_config(request: Request) -> AuthConfig:
    cfg: AuthConfig = request.app.state.auth
    return cfg


async def auth_config(request: Request) -> AuthConfig:
    """`async` so FastAPI does not run it in its thread pool (api/deps.py)."""
    return _auth_config(request)


AuthConfigDep = Annotated[AuthConfig, Depends(auth_config)]

# Where the rate-limit middleware leaves the claims of the access token it verified (token, claims), so
# the route's authentication does not verify the same signature again.
VERIFIED_CLAIMS = "verified_access_claims"


def remember_verified_claims(request: Request, token: str, claims: dict[str, Any]) -> None:
    setattr(request.state, VERIFIED_CLAIMS, (token, claims))


def _verified_claims(request: Request, token: str) -> dict[str, Any] | None:
    seen: tuple[str, dict[str, Any]] | None = getattr(request.state, VERIFIED_CLAIMS, None)
    return seen[1] if seen is not None and seen[0] == token else None


def client_ip(request: Request) -> str:
    """The peer address. Behind a proxy, run uvicorn with `--proxy-headers --forwarded-allow-ips` so
    this is the customer's address and a client can't choose its own by sending X-Forwarded-For."""
    return request.client.host if request.client else "unknown"


async def client_info(
    request: Request,
    user_agent: Annotated[str | None, Header(max_length=512)] = None,
    x_device_id: Annotated[
        str | None,
        Header(
            max_length=128,
            description="A random id the app or browser keeps for this install; part of the device "
            "fingerprint (with the User-Agent) that triggers new-device alerts.",
        ),
    ] = None,
) -> ClientInfo:
    return ClientInfo(ip=client_ip(request), user_agent=user_agent or "", device_id=x_device_id or "")


ClientDep = Annotated[ClientInfo, Depends(client_info)]


@dataclass(frozen=True, slots=True)
class Authenticated:
    user: User
    session_id: uuid.UUID


async def current_auth(
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Authenticated:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise TokenInvalid("an access token is required", code="not_authenticated")
    token = credentials.credentials
    user, sess = await auth_sessions.authenticate(
        session, cfg, token, claims=_verified_claims(request, token)
    )
    request.state.user_id = str(user.id)
    return Authenticated(user=user, session_id=sess.id)


async def verified_reader(
    request: Request,
    conn: ReadConnection,
    cfg: AuthConfigDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> auth_sessions.Reader:
    """`VerifiedUser` for routes that only read: the same checks and answers (401 without a live
    session, 403 `email_not_verified`), on the route's read connection (`ReadConnection`)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise TokenInvalid("an access token is required", code="not_authenticated")
    token = credentials.credentials
    reader = await auth_sessions.authenticate_reader(
        conn, cfg, token, claims=_verified_claims(request, token)
    )
    request.state.user_id = str(reader.user_id)
    if not reader.email_verified:
        raise ProblemError(403, "email_not_verified", "confirm your email address first")
    return reader


VerifiedReader = Annotated[auth_sessions.Reader, Depends(verified_reader)]


async def current_user(auth: Annotated[Authenticated, Depends(current_auth)]) -> User:
    return auth.user


async def verified_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.email_verified:
        raise ProblemError(403, "email_not_verified", "confirm your email address first")
    return user


CurrentAuth = Annotated[Authenticated, Depends(current_auth)]
CurrentUser = Annotated[User, Depends(current_user)]
VerifiedUser = Annotated[User, Depends(verified_user)]

TotpCode = Annotated[
    str | None,
    Header(
        alias="X-TOTP-Code",
        pattern=r"^[0-9]{6}$",
        description="A current code from the authenticator app, for actions that need the second factor.",
    ),
]


async def require_totp(
    request: Request, session: AsyncSession, user: User, code: str | None, *, mandatory: bool = True
) -> None:
    """Step-up check with the second factor (docs/architecture.md §7). Call it before the action changes
    anything.

    `mandatory=True` (withdrawals, adding withdrawal addresses, trades above £10k): users without 2FA
    are refused with `totp_enrollment_required`. `mandatory=False` (account settings): the code is only
    demanded from users who enabled 2FA. A code is accepted once only; wrong codes count toward a
    lock-out. Raises 403 (`totp_required`, `totp_invalid`, `totp_replayed`) or 429 (`totp_locked`).
    The consumed code is committed at once, so it can't be replayed even if the action then fails.
    """
    if not user.twofa_enabled:
        if mandatory:
            raise ProblemError(403, "totp_enrollment_required", "enable two-factor authentication first")
        return
    cfg = _auth_config(request)
    try:
        await totp_service.verify_and_consume(
            session, user, code, policy=cfg.policy, now=utcnow(), ip=client_ip(request)
        )
    except (SecondFactorRequired, SecondFactorInvalid) as e:
        e.field = "header.X-TOTP-Code"  # here the code comes in a header, not a body field
        raise
    await session.commit()


def totp_guard(*, mandatory: bool = True) -> Callable[..., Awaitable[None]]:
    """A dependency enforcing the `X-TOTP-Code` header: `dependencies=[Depends(totp_guard())]`."""

    async def guard(request: Request, session: SessionDep, user: CurrentUser, code: TotpCode = None) -> None:
        await require_totp(request, session, user, code, mandatory=mandatory)

    return guard


RequireTotp = Depends(totp_guard(mandatory=True))


def require_role(role: str) -> Callable[..., Awaitable[User]]:
    """A dependency admitting only staff with `role` (403 otherwise): `Depends(require_role("approver"))`.

    Staff must have the second factor enabled even to read: a staff user made by `cli create-staff` has
    none until the console enrols it, and a password alone must not open the admin API's queues (AML
    cases, KYC documents, customers' money)."""

    async def check(user: CurrentUser) -> User:
        _check_role(user, role)
        return user

    return check


def _check_role(user: User, role: str) -> None:
    if role not in user.roles:
        raise ProblemError(403, "forbidden", f"the {role} role is required")
    if not user.twofa_enabled:
        raise ProblemError(
            403, "totp_enrollment_required", "staff must enable two-factor authentication first"
        )


def require_staff(role: str) -> Callable[..., Awaitable[User]]:
    """One dependency for a staff action: the user has `role` (403 otherwise) and has just proved the
    second factor with `X-TOTP-Code` (`require_totp`, mandatory). Returns the staff user, whose id the
    action's decision token and audit row carry."""

    async def check(request: Request, session: SessionDep, user: CurrentUser, code: TotpCode = None) -> User:
        _check_role(user, role)
        await require_totp(request, session, user, code, mandatory=True)
        return user

    return check


# Staff who act on money: the role, and a TOTP code with every request.
ApproverWithTotp = Annotated[User, Depends(require_staff("approver"))]
OpsWithTotp = Annotated[User, Depends(require_staff("ops"))]
ComplianceWithTotp = Annotated[User, Depends(require_staff("compliance"))]

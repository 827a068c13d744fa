"""Customer authentication: `/api/v1/auth/...` (docs/architecture.md §B, §7). Logic lives in
`services.auth`."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from api.auth_deps import (
    AuthConfigDep,
    ClientDep,
    CurrentAuth,
    CurrentUser,
    TotpCode,
    client_ip,
    problem_responses,
    require_totp,
)
from api.deps import SessionDep
from api.errors import ProblemError
from models.auth import (
    Accepted,
    ChangePasswordRequest,
    EmailQueued,
    LoginRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    ProfileUpdate,
    RefreshRequest,
    RegisterRequest,
    SessionPublic,
    TokenResponse,
    TotpCodeRequest,
    TotpEnrollRequest,
    TotpEnrollResponse,
    TotpStatus,
    UserPublic,
    VerifyEmailRequest,
)
from models.users import User
from services.auth import TokenPair, password_changes, registration, second_factor, sessions

log = logging.getLogger("api.auth")

router = APIRouter(prefix="/auth", tags=["auth"], responses=problem_responses(400, 422, 429))
AUTHED = problem_responses(401, 403)


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        expires_in=pair.access_expires_in,
        refresh_expires_in=pair.refresh_expires_in,
        session_id=pair.session_id,
    )


REGISTERED = Accepted(detail="check your inbox: we sent you an email to continue")
RESET_REQUESTED = Accepted(detail="if an account uses this address, we sent it a password reset email")


@router.post("/register", status_code=202, response_model=Accepted)
async def register(
    body: RegisterRequest,
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
) -> Accepted:
    """Open a customer account; the next step is in the email (the answer is the same for any address)."""
    await registration.register(
        session,
        cfg,
        email=body.email,
        password=body.password,
        first_name=body.first_name,
        last_name=body.last_name,
        ip=client_ip(request),
    )
    return REGISTERED


@router.post("/password-reset", status_code=202, response_model=Accepted)
async def request_password_reset(
    body: PasswordResetRequest,
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
) -> Accepted:
    """Email a single-use password reset token (the answer is the same whether the address has an account)."""
    await password_changes.request_password_reset(session, cfg, body.email, ip=client_ip(request))
    return RESET_REQUESTED


@router.post("/password-reset/confirm", status_code=204, responses=problem_responses(401))
async def confirm_password_reset(
    body: PasswordResetConfirm,
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
) -> Response:
    """Set a new password with the emailed token; every session is signed out."""
    ip = client_ip(request)
    await password_changes.reset_password(session, cfg, body.token, body.new_password, ip=ip)
    return Response(status_code=204)


@router.get("/verify-email", response_model=UserPublic, responses=problem_responses(401))
async def verify_email_link(
    token: Annotated[str, Query(min_length=1, max_length=4096)],
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
) -> User:
    """Confirm an email address from the emailed link."""
    return await registration.verify_email(session, cfg, token, ip=client_ip(request))


@router.post("/verify-email", response_model=UserPublic, responses=problem_responses(401))
async def verify_email(
    body: VerifyEmailRequest, request: Request, session: SessionDep, cfg: AuthConfigDep
) -> User:
    """Confirm an email address with the token from the emailed link."""
    return await registration.verify_email(session, cfg, body.token, ip=client_ip(request))


@router.post(
    "/verify-email/resend",
    status_code=202,
    response_model=EmailQueued,
    responses={**AUTHED, **problem_responses(409)},
)
async def resend_verification(user: CurrentUser, session: SessionDep, cfg: AuthConfigDep) -> EmailQueued:
    """Email a fresh verification link."""
    if user.email_verified:
        raise ProblemError(409, "already_verified", "the email address is already verified")
    await registration.resend_verification(session, cfg, user)
    return EmailQueued()


@router.post("/login", response_model=TokenResponse, responses=problem_responses(401, 403))
async def login(
    body: LoginRequest,
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
    client: ClientDep,
) -> TokenResponse:
    """Exchange email, password (and TOTP code when 2FA is on) for an access and a refresh token."""
    result = await sessions.login(
        session, cfg, email=body.email, password=body.password, totp_code=body.totp_code, client=client
    )
    return _tokens(result.tokens)


@router.post("/refresh", response_model=TokenResponse, responses=problem_responses(401, 403))
async def refresh(
    body: RefreshRequest, session: SessionDep, cfg: AuthConfigDep, client: ClientDep
) -> TokenResponse:
    """Rotate the token pair; reusing an old refresh token revokes the whole session."""
    return _tokens(await sessions.refresh(session, cfg, body.refresh_token, client=client))


@router.post("/logout", status_code=204, responses=AUTHED)
async def logout(request: Request, session: SessionDep, current: CurrentAuth) -> Response:
    """End this session: its access and refresh tokens stop working at once."""
    await sessions.logout(session, current.user, current.session_id, ip=client_ip(request))
    return Response(status_code=204)


@router.get("/sessions", response_model=list[SessionPublic], responses=AUTHED)
async def list_sessions(session: SessionDep, current: CurrentAuth) -> list[SessionPublic]:
    """List your active sessions (devices signed in)."""
    rows = await sessions.list_sessions(session, current.user)
    return [
        SessionPublic(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=s.expires_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == current.session_id,
        )
        for s in rows
    ]


@router.delete("/sessions/{session_id}", status_code=204, responses={**AUTHED, **problem_responses(404)})
async def revoke_session(
    session_id: uuid.UUID, request: Request, session: SessionDep, current: CurrentAuth
) -> Response:
    """Sign out one of your sessions."""
    await sessions.revoke_session(session, current.user, session_id, ip=client_ip(request))
    return Response(status_code=204)


@router.get("/me", response_model=UserPublic, responses=AUTHED)
async def me(user: CurrentUser) -> User:
    """Your account."""
    return user


@router.patch("/me", response_model=UserPublic, responses=AUTHED)
async def update_me(
    body: ProfileUpdate, request: Request, session: SessionDep, user: CurrentUser, totp_code: TotpCode = None
) -> User:
    """Change your profile (needs `X-TOTP-Code` when 2FA is on)."""
    await require_totp(request, session, user, totp_code, mandatory=False)
    changes = body.model_dump(exclude_unset=True)
    return await registration.update_profile(session, user, changes, ip=client_ip(request))


@router.post("/password", status_code=204, responses=AUTHED)
async def change_password(
    body: ChangePasswordRequest,
    request: Request,
    session: SessionDep,
    cfg: AuthConfigDep,
    current: CurrentAuth,
    totp_code: TotpCode = None,
) -> Response:
    """Change your password (needs `X-TOTP-Code` when 2FA is on); other sessions are signed out."""
    await require_totp(request, session, current.user, totp_code, mandatory=False)
    await password_changes.change_password(
        session,
        cfg,
        current.user,
        current_password=body.current_password,
        new_password=body.new_password,
        keep_session=current.session_id,
        ip=client_ip(request),
    )
    return Response(status_code=204)


@router.post("/2fa/enroll", response_model=TotpEnrollResponse, responses={**AUTHED, **problem_responses(409)})
async def totp_enroll(
    body: TotpEnrollRequest, request: Request, session: SessionDep, cfg: AuthConfigDep, user: CurrentUser
) -> TotpEnrollResponse:
    """Start TOTP enrolment: a secret and an otpauth:// URI for the authenticator app."""
    enrolment = await second_factor.totp_enroll(
        session, cfg, user, password=body.password, ip=client_ip(request)
    )
    return TotpEnrollResponse(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post("/2fa/confirm", response_model=TotpStatus, responses={**AUTHED, **problem_responses(409)})
async def totp_confirm(
    body: TotpCodeRequest, request: Request, session: SessionDep, cfg: AuthConfigDep, user: CurrentUser
) -> TotpStatus:
    """Turn 2FA on with the first code from the authenticator app."""
    await second_factor.totp_confirm(session, cfg, user, body.code, ip=client_ip(request))
    return TotpStatus(enabled=True)


@router.post("/2fa/disable", response_model=TotpStatus, responses={**AUTHED, **problem_responses(409)})
async def totp_disable(
    body: TotpCodeRequest, request: Request, session: SessionDep, cfg: AuthConfigDep, user: CurrentUser
) -> TotpStatus:
    """Turn 2FA off (needs a current code)."""
    await second_factor.totp_disable(session, cfg, user, body.code, ip=client_ip(request))
    return TotpStatus(enabled=False)

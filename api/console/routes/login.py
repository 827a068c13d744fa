"""Staff log in (password + TOTP, or TOTP enrolment first) and log out."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth_deps import AuthConfigDep, ClientDep
from api.console.deps import (
    COOKIE,
    LOGIN_CSRF_COOKIE,
    CsrfChecked,
    CurrentStaff,
    SessionLimitsDep,
)
from api.console.templating import render
from api.deps import SessionDep
from api.errors import ProblemError
from services.staff import sessions as staff_sessions

router = APIRouter()


def _login_csrf(request: Request, sent: str) -> None:
    """Double-submit check for the login forms (no session yet): the form's token equals its cookie's."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not sent or not secrets.compare_digest(cookie, sent):
        raise ProblemError(403, "csrf_invalid", "the form is stale or forged; reload the page")


def _set_cookie(response: Response, name: str, value: str, path: str, max_age: int | None = None) -> None:
    # Secure always (browsers treat http://localhost and 127.0.0.1 as secure, so dev works), HttpOnly, and
    # SameSite=Strict: no other site can make a browser send it.
    response.set_cookie(
        name, value, path=path, max_age=max_age, secure=True, httponly=True, samesite="strict"
    )


def _signed_in(request: Request, token: str, max_age: int) -> Response:
    response: Response
    if request.headers.get("HX-Request"):
        response = Response(status_code=200, headers={"HX-Redirect": "/console"})
    else:
        response = RedirectResponse("/console", status_code=303)
    _set_cookie(response, COOKIE, token, "/console", max_age)
    response.delete_cookie(
        LOGIN_CSRF_COOKIE, path="/console/login", secure=True, httponly=True, samesite="strict"
    )
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_page(request: Request) -> HTMLResponse:
    """The staff login form."""
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", None, login_csrf=token)
    _set_cookie(response, LOGIN_CSRF_COOKIE, token, "/console/login", 1800)
    return response


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    session: SessionDep,
    limits: SessionLimitsDep,
    cfg: AuthConfigDep,
    client: ClientDep,
    email: Annotated[str, Form(max_length=255)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    totp_code: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    """Log in with password and TOTP; a staff member without TOTP is shown the enrolment step."""
    _login_csrf(request, csrf_token)
    result = await staff_sessions.login(
        session, cfg, limits, email=email, password=password, totp_code=totp_code or None, client=client
    )
    if result.token is None:
        return render(
            request, "enrol.html", None, login_csrf=csrf_token, ticket=result.enrolment_ticket,
            secret=result.totp_secret, otpauth_uri=result.otpauth_uri,
        )  # fmt: skip
    return _signed_in(request, result.token, int(limits.maximum.total_seconds()))


@router.post("/login/enrol", include_in_schema=False)
async def enrol(
    request: Request,
    session: SessionDep,
    limits: SessionLimitsDep,
    cfg: AuthConfigDep,
    client: ClientDep,
    ticket: Annotated[str, Form(max_length=256)],
    code: Annotated[str, Form(max_length=16)],
    csrf_token: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """Confirm TOTP enrolment with the first code, then sign in."""
    _login_csrf(request, csrf_token)
    result = await staff_sessions.confirm_enrolment(
        session, cfg, limits, ticket=ticket, code=code, client=client
    )
    assert result.token is not None
    return _signed_in(request, result.token, int(limits.maximum.total_seconds()))


@router.post("/logout", include_in_schema=False, dependencies=[CsrfChecked])
async def logout(staff: CurrentStaff, session: SessionDep) -> Response:
    """End this console session."""
    await staff_sessions.logout(session, staff.session, ip=staff.ip)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/console", secure=True, httponly=True, samesite="strict")
    return response

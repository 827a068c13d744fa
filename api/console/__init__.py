"""The staff console at `/console`: server-rendered (Jinja2 + htmx), every asset served from `static/`.

`install(app)` mounts the routes, the static files and the console's own answers to "not signed in"
(a redirect to the login page) and "not allowed" (a 403 page). See README.md beside this file for how a
screen is added.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.console.deps import ConsoleForbidden, ConsoleLoginRequired, current_staff
from api.console.routes import audit, dashboard, login, permissions, staff, withdrawals
from api.console.screens import ROUTERS as SCREENS
from api.console.templating import HERE, render
from services.staff.permissions import DESCRIPTIONS

PREFIX = "/console"

# The screens' routers, each with paths relative to /console ("" is the dashboard itself).
ROUTERS: list[APIRouter] = [
    login.router,
    dashboard.router,
    withdrawals.router,
    audit.router,
    staff.router,
    permissions.router,
    *SCREENS,  # the investigation screens (api/console/screens)
]

# Every console answer: no caching of staff pages, no framing, scripts and styles from us only.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}


class ConsoleHeadersMiddleware:
    """Adds `SECURITY_HEADERS` to every /console answer (pure ASGI: other paths pass untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def include(extra: APIRouter) -> None:
    """Add a screen's router (paths relative to /console) to the console; call before `install`."""
    if extra not in ROUTERS:
        ROUTERS.append(extra)


def install(app: FastAPI) -> None:
    """Mount the console on `app`."""
    for screen in ROUTERS:
        app.include_router(screen, prefix=PREFIX)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="console-static")

    app.add_middleware(ConsoleHeadersMiddleware)

    @app.exception_handler(ConsoleLoginRequired)
    async def _login_required(request: Request, exc: ConsoleLoginRequired) -> Response:
        if request.headers.get("HX-Request"):
            return Response(status_code=401, headers={"HX-Redirect": f"{PREFIX}/login"})
        return RedirectResponse(f"{PREFIX}/login", status_code=303)

    @app.exception_handler(ConsoleForbidden)
    async def _forbidden(request: Request, exc: ConsoleForbidden) -> Response:
        staff = getattr(request.state, "console_staff", None)
        return render(
            request, "error.html", staff, status_code=403, status=403, title="Not allowed",
            detail=f"Your roles do not include the permission to {DESCRIPTIONS[exc.permission].lower()} "
            f"({exc.permission.value}).",
        )  # fmt: skip


__all__ = ["PREFIX", "ROUTERS", "current_staff", "include", "install"]

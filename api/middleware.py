"""One structured JSON log line per HTTP request (docs/architecture.md §7 "log all API requests"), and request
ids.

The line carries: request id, method, route template (`/api/v1/auth/sessions/{session_id}`, so log
queries group by endpoint), path, status, latency in ms, client IP and the user id when the request was
authenticated (set on `request.state.user_id` by `api.auth_deps`). A client-supplied `X-Request-ID` is
kept when it looks like an id (so one id follows a call across services) and echoed on the response;
otherwise a new one is made.

Pure ASGI rather than `BaseHTTPMiddleware`: no extra task per request, and streaming bodies pass through.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("api.access")

REQUEST_ID_HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1")
            if _SAFE_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def _route_template(scope: Scope) -> str | None:
    """The matched route's full template. FastAPI ≥0.16x keeps included routers' routes un-prefixed
    (`scope["route"].path` is `/auth/...`) and records the full template in its effective route context;
    read that when present, else fall back to the route's own path (None when nothing matched)."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    template = getattr(context, "path_format", None)
    if isinstance(template, str):
        return template
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else None


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, *, logger: logging.Logger = log) -> None:
        self.app = app
        self.log = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            self.log.info(
                json.dumps(
                    {
                        "event": "http_request",
                        "request_id": request_id,
                        "method": scope["method"],
                        "route": _route_template(scope),
                        "path": scope["path"],
                        "status": status,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                        "client_ip": client[0] if client else None,
                        "user_id": state.get("user_id"),
                    }
                )
            )

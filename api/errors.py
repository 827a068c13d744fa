"""One error shape for every 4xx and 5xx: RFC 9457 problem details (`application/problem+json`).

Services raise `services.errors.DomainError` subclasses (each with its code and status) and routes let
them through; routes may raise `ProblemError` for HTTP-only refusals. The handlers here turn everything
(including HTTPException and validation errors) into the same JSON. A 5xx never carries a stack trace
or an exception message. Infrastructure that is down (PostgreSQL, Temporal) is a 503 with `Retry-After`
from one handler, wherever in the request it was noticed.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from services.errors import DomainError

log = logging.getLogger("api.errors")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5


class ServiceUnavailable(Exception):
    """A component the request needs (`database`, `temporal`) cannot be reached. The API answers 503 with
    `Retry-After`; nothing was done, so the client retries the same request (with its idempotency key)."""

    def __init__(self, component: str) -> None:
        super().__init__(f"{component} unavailable")
        self.component = component


# Temporal statuses that mean "the cluster could not be reached or could not answer now".
_TEMPORAL_DOWN = {
    RPCStatusCode.UNAVAILABLE,
    RPCStatusCode.DEADLINE_EXCEEDED,
    RPCStatusCode.RESOURCE_EXHAUSTED,
}
# Errors meaning the database could not be reached or dropped the connection (including pool
# exhaustion and transient server states such as shutdown, deadlock or serialization failure).
DATABASE_DOWN: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def unavailable_component(exc: BaseException) -> str | None:
    """`database` / `temporal` when `exc` says that component is down, else None."""
    if isinstance(exc, ServiceUnavailable):
        return exc.component
    if isinstance(exc, DATABASE_DOWN) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated):
        return "database"
    if isinstance(exc, RPCError) and exc.status in _TEMPORAL_DOWN:
        return "temporal"
    return None


class Problem(BaseModel):
    """RFC 9457 problem details, plus `errors` naming each invalid field."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    code: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """Raise from a route or service adapter to answer with a problem. `code` is a stable machine name."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers
        self.errors = errors


def problem_response(
    request: Request,
    status: int,
    *,
    code: str | None = None,
    detail: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body = Problem(
        type=f"urn:broker:problem:{code}" if code else "about:blank",
        title=title,
        status=status,
        detail=detail,
        instance=request.url.path,
        code=code,
        errors=errors,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc), "message": err.get("msg", "invalid"), "type": err.get("type")})
    return out


# The load balancer's probes, never rate-limited (`api.ratelimit.RateLimits.exempt_paths`).
UNTHROTTLED_PATHS = ("/healthz", "/readyz")


def _document_framework_errors(schema: dict[str, Any]) -> None:
    """Document the errors FastAPI itself answers as what the handlers below make of them: a 422
    (invalid parameters or body, or a control character anywhere) is a problem document, not FastAPI's
    `HTTPValidationError` JSON; an operation with a body can answer 400 (a body that can't be read, e.g.
    not UTF-8) and 413 (over the guard's limit); every operation but the probes can answer 429."""
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, path_item in schema.get("paths", {}).items():
        for method, operation in path_item.items():
            responses = operation.get("responses", {})
            if path not in UNTHROTTLED_PATHS:
                # The shared rate limits (`api/ratelimit.py`) apply to every request before routing, and
                # a route checking `X-TOTP-Code` locks out after repeated wrong codes (`totp_locked`).
                responses.setdefault(
                    "429",
                    {
                        "description": "too many requests; see Retry-After (problem details)",
                        "content": content,
                    },
                )
            # Any operation: the control-character guard (`api/input_guard.py`) checks every path, query
            # string and body before routing, whatever the operation declares.
            responses["422"] = {"description": "invalid input (problem details)", "content": content}
            if method in ("post", "put", "patch"):
                responses.setdefault(
                    "413", {"description": "body too large (problem details)", "content": content}
                )
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = {"description": "unreadable body (problem details)", "content": content}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def install(app: FastAPI) -> None:
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_framework_errors(default_openapi())  # fills app.openapi_schema
        return app.openapi_schema or default_openapi()

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        headers = exc.headers
        if exc.status == 503 and not any(k.lower() == "retry-after" for k in headers or {}):
            # Every 503 (a venue, the bank, Temporal …) says when to come back, whichever route raised it.
            headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
        return problem_response(
            request, exc.status, code=exc.code, detail=exc.detail, errors=exc.errors, headers=headers
        )

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        headers = exc.headers()
        if exc.status == 503:  # something we need is away: say when to come back, as for every 503
            if not any(k.lower() == "retry-after" for k in headers or {}):
                headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
        elif exc.status >= 500:  # our own bug (e.g. a posting that does not balance): logged, never shown
            log.error("%s on %s %s", exc.code, request.method, request.url.path, exc_info=exc)
            return problem_response(request, exc.status, code=exc.code, detail="an internal error occurred")
        errors = [{"field": exc.field, "message": exc.detail, "type": exc.code}] if exc.field else None
        return problem_response(
            request, exc.status, code=exc.code, detail=exc.detail, errors=errors, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        fields = ", ".join(e["field"] for e in errors)
        return problem_response(
            request, 422, code="validation_error", detail=f"invalid input: {fields}", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else None
        code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_") if exc.status_code else None
        return problem_response(
            request, exc.status_code, code=code, detail=detail, headers=getattr(exc, "headers", None)
        )

    async def _unavailable_or_internal(request: Request, exc: Exception) -> JSONResponse:
        component = unavailable_component(exc)
        if component is None:
            return await _unhandled(request, exc)
        log.warning(
            "%s unavailable on %s %s: %s", component, request.method, request.url.path, type(exc).__name__
        )
        return problem_response(
            request,
            503,
            code=f"{component}_unavailable",
            detail=f"the {component} is unavailable; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    for cls in (ServiceUnavailable, sa_exc.DBAPIError, *DATABASE_DOWN, RPCError):
        app.add_exception_handler(cls, _unavailable_or_internal)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        component = unavailable_component(exc)
        if component is not None:  # raised outside the routes (a middleware): same answer
            return await _unavailable_or_internal(request, exc)
        log.error(
            "unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc
        )
        return problem_response(request, 500, code="internal_error", detail="an internal error occurred")

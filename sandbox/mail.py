"""A local stand-in for SendGrid's v3 `mail/send` API: the mail sink of `make run` and the tests.

It speaks enough of the real protocol for the official `sendgrid` client to be pointed at it unchanged
(`SendGridAPIClient(api_key, host="http://127.0.0.1:<port>")`): a bearer API-key check answered with
SendGrid's error JSON, a shape check of the body, `202 Accepted` with an `X-Message-Id` header. Unlike
SendGrid it keeps every accepted message in memory and lists it over HTTP, so a tester, the demo and the
tests read the mail that was really delivered:

    GET    /messages[?to=addr]   what was received, oldest first (recipient match is case-insensitive)
    DELETE /messages             forget everything

Imports nothing of ours: the sandbox is the outside world.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

MESSAGES = web.AppKey("messages", list)
API_KEY = web.AppKey("api_key", str)

_DOCS = "https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send"


def _errors(status: int, *errors: tuple[str, str | None]) -> web.Response:
    """SendGrid's error body: `{"errors": [{"message", "field", "help"}]}`."""
    body = {"errors": [{"message": m, "field": f, "help": _DOCS if f else None} for m, f in errors]}
    return web.json_response(body, status=status)


def _address(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("email"), str) and "@" in value["email"]:
        return str(value["email"])
    return None


def _validate(body: Any) -> list[tuple[str, str | None]]:
    """The subset of SendGrid's rules the client can break: one error per broken field."""
    if not isinstance(body, dict):
        return [("The request body must be a JSON object.", None)]
    problems: list[tuple[str, str | None]] = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append(
            (
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
            )
        )
    else:
        for i, p in enumerate(personalizations):
            to = p.get("to") if isinstance(p, dict) else None
            if not isinstance(to, list) or not to or any(_address(a) is None for a in to):
                problems.append(
                    (
                        "Each personalization needs a 'to' list of valid email addresses.",
                        f"personalizations.{i}.to",
                    )
                )
    if _address(body.get("from")) is None:
        problems.append(("The from object must be provided for every email send.", "from.email"))
    subject = body.get("subject")
    per_subject = isinstance(personalizations, list) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"] for p in personalizations
    )
    if not (isinstance(subject, str) and subject) and not per_subject and "template_id" not in body:
        problems.append(("The subject is required.", "subject"))
    content = body.get("content")
    if "template_id" not in body:
        if not isinstance(content, list) or not content:
            problems.append(
                ("Unless a valid template_id is provided, the content parameter is required.", "content")
            )
        else:
            for i, c in enumerate(content):
                if not (
                    isinstance(c, dict)
                    and isinstance(c.get("type"), str)
                    and isinstance(c.get("value"), str)
                    and c["value"]
                ):
                    problems.append(("Each content item needs a type and a non-empty value.", f"content.{i}"))
    return problems


async def send(request: web.Request) -> web.Response:
    expected = f"Bearer {request.app[API_KEY]}"
    if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
        return _errors(401, ("The provided authorization grant is invalid, expired, or revoked", None))
    try:
        body = await request.json()
    except ValueError:
        return _errors(400, ("Bad Request: the body is not valid JSON.", None))
    problems = _validate(body)
    if problems:
        return _errors(400, *problems)
    message_id = secrets.token_urlsafe(16)
    content = {c["type"]: c["value"] for c in body.get("content", [])}
    for p in body["personalizations"]:
        request.app[MESSAGES].append(
            {
                "id": message_id,
                "received_at": datetime.now(UTC).isoformat(),
                "from": body["from"]["email"],
                "to": [a["email"] for a in p["to"]],
                "subject": p.get("subject") or body.get("subject"),
                "text": content.get("text/plain"),
                "html": content.get("text/html"),
                "request": body,
            }
        )
    return web.Response(status=202, headers={"X-Message-Id": message_id})


async def list_messages(request: web.Request) -> web.Response:
    to = request.query.get("to", "").lower()
    found = [m for m in request.app[MESSAGES] if not to or to in (a.lower() for a in m["to"])]
    return web.json_response(found)


async def clear_messages(request: web.Request) -> web.Response:
    request.app[MESSAGES].clear()
    return web.Response(status=204)


def create_app(api_key: str) -> web.Application:
    """The mail sink, accepting only `api_key` as the bearer token (as SendGrid would)."""
    app = web.Application()
    app[API_KEY] = api_key
    app[MESSAGES] = []
    app.router.add_post("/v3/mail/send", send)
    app.router.add_get("/messages", list_messages)
    app.router.add_delete("/messages", clear_messages)
    return app

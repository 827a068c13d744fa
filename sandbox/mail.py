"""A local stand-in for SendGrid's v3 `mail/send` API: the mail sink of `make run` and the tests.

It speaks enough of the real protocol for the official `sendgrid` client to be pointed at it unchanged
(`SendGridAPIClient(api_key, host="http://127.0.0.1:<port>")`): a bearer API-key check answered with
SendGrid's error JSON, a shape check of the body, `202 Accepted` with an `X-Message-Id` header. Unlike
SendGrid it keeps every accepted message in memory and lists it over HTTP, so a tester, the demo and the
tests read the mail that was really delivered:

    GET    /messages[?to=addr]   what was received, oldest first (recipient match is case-insensitive)
    DELETE /messages             forget everything

Also like SendGrid (issue 17):

- `GET /v3/messages?query=unique_args['k']="v"` (the Email Activity API): the messages whose
  `custom_args` carry that value, so a sender that crashed after sending can ask whether it was taken.
- The signed Event Webhook: after `POST /_control/event_webhook {"url"}`, every accepted message is
  followed by `processed` and then `delivered` events (`bounce` for a recipient whose local part starts
  with "bounce", `dropped` for "dropped"), POSTed to that URL as SendGrid does: a JSON list, each event
  carrying the message's `custom_args`, signed with ECDSA P-256 over timestamp + body
  (`X-Twilio-Email-Event-Webhook-Signature`, base64 DER; `-Timestamp`). `GET /_control/event_webhook`
  gives the public key (base64 DER), as SendGrid's settings page does.
- Faults (`POST /_control/faults {"kind", "count"?, "status"?, "hang_ms"?}`, `DELETE /_control/faults`):
  `http_error` answers `status` (default 503) without taking the message; `timeout_after_accept` takes
  the message, then holds the answer `hang_ms` (the sender times out not knowing); `hang_before_accept`
  holds the request `hang_ms` first and takes it only if the sender is still connected; `refuse`
  answers 400.

Imports nothing of ours: the sandbox is the outside world.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandbox.control import take_fault

MESSAGES = web.AppKey("messages", list)
API_KEY = web.AppKey("api_key", str)
FAULTS = web.AppKey("faults", list)
WEBHOOK = web.AppKey("webhook", dict)
TASKS = web.AppKey("tasks", set)

# The development key pair the sink signs events with (a real SendGrid account has its own). The broker's
# development default for SENDGRID_WEBHOOK_PUBLIC_KEY is the public half.
DEV_WEBHOOK_PRIVATE_KEY = (
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgVoJQGUHRQfubcfyAB8XauO6Mo9/CScceE+0nl3WQstahRANCAAT6"
    "wuOtCHKjBVjfGRdS5u2zWv5AEaGs4nph8EtNcKD2HASUGJAdnhV7IjKXIwOh6+lsidQY6q3g20M6b4yK3Fzb"
)
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
_QUERY = re.compile(r"""^unique_args\['([^']+)'\]\s*=\s*"([^"]*)"$""")

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


def _authorised(request: web.Request) -> bool:
    expected = f"Bearer {request.app[API_KEY]}"
    return secrets.compare_digest(request.headers.get("Authorization", ""), expected)


async def send(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _errors(401, ("The provided authorization grant is invalid, expired, or revoked", None))
    fault = take_fault(request.app[FAULTS])
    if fault and fault["kind"] == "hang_before_accept":
        # The request is held before it is acted on; a sender gone meanwhile (killed) sent nothing.
        await asyncio.sleep(int(fault.get("hang_ms", 30_000)) / 1000)
        if request.transport is None or request.transport.is_closing():
            request.app[WEBHOOK]["dropped_requests"] = request.app[WEBHOOK].get("dropped_requests", 0) + 1
            return web.Response(status=499)
    if fault and fault["kind"] == "http_error":
        return _errors(int(fault.get("status", 503)), ("Service unavailable (sandbox fault)", None))
    if fault and fault["kind"] == "refuse":
        return _errors(400, ("Does not contain a valid address (sandbox fault).", "personalizations.0.to"))
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
                "custom_args": {**body.get("custom_args", {}), **p.get("custom_args", {})},
            }
        )
        _emit_events(request.app, message_id, [a["email"] for a in p["to"]], request.app[MESSAGES][-1])
    if fault and fault["kind"] == "timeout_after_accept":
        await asyncio.sleep(int(fault.get("hang_ms", 30_000)) / 1000)
    return web.Response(status=202, headers={"X-Message-Id": message_id})


def _outcome(address: str) -> str:
    local = address.split("@", 1)[0].lower()
    if local.startswith("bounce"):
        return "bounce"
    if local.startswith("dropped"):
        return "dropped"
    return "delivered"


def sign_events(private_key_b64: str, timestamp: str, payload: bytes) -> str:
    """SendGrid's signature: ECDSA P-256 / SHA-256 over timestamp + payload, base64 of the DER signature."""
    key = serialization.load_der_private_key(base64.b64decode(private_key_b64), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return base64.b64encode(key.sign(timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))).decode()


def _emit_events(app: web.Application, message_id: str, to: list[str], message: dict[str, Any]) -> None:
    url = app[WEBHOOK].get("url")
    if not url:
        return
    events: list[dict[str, Any]] = []
    for address in to:
        for kind in ("processed", _outcome(address)):
            event = {
                **message["custom_args"],  # SendGrid's own fields win over a custom arg of the same name
                "email": address,
                "timestamp": int(time.time()),
                "event": kind,
                "sg_event_id": secrets.token_urlsafe(16),
                "sg_message_id": f"{message_id}.filter0001.{len(events)}",
            }
            if kind == "bounce":
                event.update(type="bounce", reason="550 5.1.1 The email account does not exist.")
            if kind == "dropped":
                event["reason"] = "Bounced Address"
            events.append(event)
    message["events"] = events
    task = asyncio.ensure_future(_post_events(app, url, events))
    app[TASKS].add(task)
    task.add_done_callback(app[TASKS].discard)


async def _post_events(app: web.Application, url: str, events: list[dict[str, Any]]) -> None:
    body = json.dumps(events).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign_events(app[WEBHOOK]["private_key"], timestamp, body),
        TIMESTAMP_HEADER: timestamp,
    }
    for _ in range(5):  # SendGrid retries a failed POST; the sandbox a few times, quickly
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=body, headers=headers) as r:
                    app[WEBHOOK].setdefault("answers", []).append(r.status)
                    app[WEBHOOK].setdefault("bodies", []).append(await r.text())
                    if r.status < 500:
                        return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)


async def activity(request: web.Request) -> web.Response:
    """The Email Activity API's message search, for `unique_args['key']="value"` queries."""
    if not _authorised(request):
        return _errors(401, ("The provided authorization grant is invalid, expired, or revoked", None))
    match = _QUERY.match(request.query.get("query", "").strip())
    if match is None:
        return _errors(400, ("invalid query", "query"))
    key, value = match.groups()
    limit = int(request.query.get("limit", "10"))
    found = [
        {
            "msg_id": m["id"],
            "from_email": m["from"],
            "subject": m["subject"],
            "to_email": m["to"][0],
            "status": "delivered",
            "last_event_time": m["received_at"],
        }
        for m in request.app[MESSAGES]
        if str(m.get("custom_args", {}).get(key)) == value
    ]
    return web.json_response({"messages": found[:limit]})


async def set_fault(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("kind") not in {"http_error", "timeout_after_accept", "hang_before_accept", "refuse"}:
        return web.json_response({"error": "unknown fault kind"}, status=400)
    request.app[FAULTS].append(dict(body))
    return web.json_response(body)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.Response(status=204)


async def set_webhook(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[WEBHOOK]["url"] = body.get("url") or None
    return await get_webhook(request)


async def get_webhook(request: web.Request) -> web.Response:
    key = serialization.load_der_private_key(
        base64.b64decode(request.app[WEBHOOK]["private_key"]), password=None
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return web.json_response(
        {
            "url": request.app[WEBHOOK].get("url"),
            "public_key": base64.b64encode(public).decode(),
            "answers": request.app[WEBHOOK].get("answers", []),
            "bodies": request.app[WEBHOOK].get("bodies", []),
            "dropped_requests": request.app[WEBHOOK].get("dropped_requests", 0),
        }
    )


async def list_messages(request: web.Request) -> web.Response:
    to = request.query.get("to", "").lower()
    found = [m for m in request.app[MESSAGES] if not to or to in (a.lower() for a in m["to"])]
    return web.json_response(found)


async def clear_messages(request: web.Request) -> web.Response:
    request.app[MESSAGES].clear()
    return web.Response(status=204)


def create_app(api_key: str, *, webhook_private_key: str = DEV_WEBHOOK_PRIVATE_KEY) -> web.Application:
    """The mail sink, accepting only `api_key` as the bearer token (as SendGrid would)."""
    app = web.Application()
    app[API_KEY] = api_key
    app[MESSAGES] = []
    app[FAULTS] = []
    # `make run` points the events at the broker's webhook; tests set it over the control API.
    app[WEBHOOK] = {"url": os.environ.get("SENDGRID_EVENT_WEBHOOK_URL"), "private_key": webhook_private_key}
    app[TASKS] = set()
    app.router.add_post("/v3/mail/send", send)
    app.router.add_get("/v3/messages", activity)
    app.router.add_post("/_control/faults", set_fault)
    app.router.add_delete("/_control/faults", clear_faults)
    app.router.add_post("/_control/event_webhook", set_webhook)
    app.router.add_get("/_control/event_webhook", get_webhook)
    app.router.add_get("/messages", list_messages)
    app.router.add_delete("/messages", clear_messages)
    return app

"""A local stand-in for Twilio's Programmable Messaging API, enough for the official `twilio` client.

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json   send (form: To, From, Body, StatusCallback?)
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json   list (To, From filters), Twilio's page shape
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json

HTTP basic auth with the account SID and auth token; errors in Twilio's JSON (`code`, `message`,
`more_info`, `status`): 21211 for a `To` that is not an E.164 number, 20003 for bad credentials. An
accepted message answers 201 `queued`; then, if a `StatusCallback` was given, the sandbox POSTs `sent` and
`delivered` (or `undelivered` for numbers ending 0000) to it, form-encoded and signed as Twilio signs:
`X-Twilio-Signature` = base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value, sorted
by name)).

Control (`/_control/...`, like the other sandboxes): `GET /_control/messages`, `DELETE /_control/messages`,
`POST /_control/faults {"kind": "http_error"|"timeout_after_accept", "count"?, "status"?, "hang_ms"?}`,
`DELETE /_control/faults`.

Imports nothing of ours: the sandbox is the outside world.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.control import take_fault

AUTH_TOKEN = web.AppKey("auth_token", str)
MESSAGES = web.AppKey("messages", list)
FAULTS = web.AppKey("faults", list)
TASKS = web.AppKey("tasks", set)

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_DOCS = "https://www.twilio.com/docs/errors/"


def signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """Twilio's request signature over a POST: the URL, then every parameter name+value sorted by name."""
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "more_info": f"{_DOCS}{code}", "status": status}, status=status
    )


def _authorised(request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return False
    try:
        sid, _, token = base64.b64decode(header[6:]).decode().partition(":")
    except ValueError:
        return False
    return sid == request.match_info["sid"] and secrets.compare_digest(token, request.app[AUTH_TOKEN])


def _resource(m: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in m.items() if not k.startswith("_")}


async def create_message(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, 20003, "Authenticate")
    fault = take_fault(request.app[FAULTS])
    if fault and fault["kind"] == "http_error":
        return _error(int(fault.get("status", 503)), 20500, "Internal Server Error (sandbox fault)")
    form = await request.post()
    to, body = str(form.get("To", "")), str(form.get("Body", ""))
    sender = str(form.get("From") or form.get("MessagingServiceSid") or "")
    if not E164.match(to):
        return _error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
    if not body:
        return _error(400, 21602, "Message body is required.")
    now = format_datetime(datetime.now(UTC))
    sid = "SM" + secrets.token_hex(16)
    account = request.match_info["sid"]
    message = {
        "sid": sid,
        "account_sid": account,
        "to": to,
        "from": sender,
        "body": body,
        "status": "queued",
        "direction": "outbound-api",
        "num_segments": str(max(1, (len(body) + 152) // 153)),
        "date_created": now,
        "date_updated": now,
        "date_sent": None,
        "error_code": None,
        "error_message": None,
        "price": None,
        "price_unit": "GBP",
        "api_version": "2010-04-01",
        "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        "_callback": str(form.get("StatusCallback", "")) or None,
    }
    request.app[MESSAGES].append(message)
    if message["_callback"]:
        task = asyncio.ensure_future(_report(request.app, message))
        request.app[TASKS].add(task)
        task.add_done_callback(request.app[TASKS].discard)
    if fault and fault["kind"] == "timeout_after_accept":
        await asyncio.sleep(int(fault.get("hang_ms", 30_000)) / 1000)
    return web.json_response(_resource(message), status=201)


async def _report(app: web.Application, message: dict[str, Any]) -> None:
    final = "undelivered" if message["to"].endswith("0000") else "delivered"
    for status in ("sent", final):
        await asyncio.sleep(0.05)
        message["status"] = status
        message["date_sent"] = format_datetime(datetime.now(UTC))
        params = {
            "AccountSid": message["account_sid"],
            "From": message["from"],
            "MessageSid": message["sid"],
            "MessageStatus": status,
            "SmsSid": message["sid"],
            "SmsStatus": status,
            "To": message["to"],
            "ApiVersion": "2010-04-01",
        }
        if status == "undelivered":
            params["ErrorCode"] = "30003"
        headers = {"X-Twilio-Signature": signature(app[AUTH_TOKEN], message["_callback"], params)}
        for _ in range(3):
            try:
                async with aiohttp.ClientSession() as session:
                    async with session.post(message["_callback"], data=params, headers=headers) as r:
                        message.setdefault("_answers", []).append(r.status)
                        if r.status < 500:
                            break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)


async def list_messages(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, 20003, "Authenticate")
    to, sender = request.query.get("To"), request.query.get("From")
    stored: list[dict[str, Any]] = request.app[MESSAGES]
    found = [
        _resource(m)
        for m in stored[::-1]  # newest first, as Twilio lists
        if m["account_sid"] == request.match_info["sid"]
        and (to is None or m["to"] == to)
        and (sender is None or m["from"] == sender)
    ]
    size = int(request.query.get("PageSize", "50"))
    uri = f"/2010-04-01/Accounts/{request.match_info['sid']}/Messages.json"
    return web.json_response(
        {
            "messages": found[:size],
            "page": 0,
            "page_size": size,
            "start": 0,
            "end": max(len(found[:size]) - 1, 0),
            "first_page_uri": f"{uri}?PageSize={size}&Page=0",
            "next_page_uri": None,
            "previous_page_uri": None,
            "uri": f"{uri}?PageSize={size}&Page=0",
        }
    )


async def get_message(request: web.Request) -> web.Response:
    if not _authorised(request):
        return _error(401, 20003, "Authenticate")
    for m in request.app[MESSAGES]:
        if m["sid"] == request.match_info["message_sid"]:
            return web.json_response(_resource(m))
    return _error(404, 20404, "The requested resource was not found")


async def control_messages(request: web.Request) -> web.Response:
    return web.json_response([_resource(m) for m in request.app[MESSAGES]])


async def control_clear(request: web.Request) -> web.Response:
    request.app[MESSAGES].clear()
    return web.Response(status=204)


async def set_fault(request: web.Request) -> web.Response:
    body = await request.json()
    if body.get("kind") not in {"http_error", "timeout_after_accept"}:
        return web.json_response({"error": "unknown fault kind"}, status=400)
    request.app[FAULTS].append(dict(body))
    return web.json_response(body)


async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].clear()
    return web.Response(status=204)


def create_app(api_key: str) -> web.Application:
    """The Twilio sandbox; `api_key` is the account's auth token (any account SID is accepted)."""
    app = web.Application()
    app[AUTH_TOKEN] = api_key
    app[MESSAGES] = []
    app[FAULTS] = []
    app[TASKS] = set()
    base = "/2010-04-01/Accounts/{sid}"
    app.router.add_post(f"{base}/Messages.json", create_message)
    app.router.add_get(f"{base}/Messages.json", list_messages)
    app.router.add_get(base + "/Messages/{message_sid}.json", get_message)
    app.router.add_get("/_control/messages", control_messages)
    app.router.add_delete("/_control/messages", control_clear)
    app.router.add_post("/_control/faults", set_fault)
    app.router.add_delete("/_control/faults", clear_faults)
    return app

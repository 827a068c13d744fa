"""Refuse control characters in client input, for every route at once.

A NUL (`\\u0000`) in an email, a name, a label or a tag used to reach PostgreSQL, which cannot store it
in text, and the request failed with a 500; other control characters (backspace, escape, bell …) are
never meaningful in this API's strings and only help to forge log lines or hide text from a reviewer;
nor are Unicode's bidirectional overrides, which make text display as something it is not.
So before any route runs, the JSON body (every string value and key, however deep), the query string
and the path are checked, and the first offending place is answered with a 422 problem naming the
field the way validation errors do (`body.first_name`, `query.label`, `path`). Tab, line feed and
carriage return stay allowed: free-text fields (a reason for an approval) may hold them.

One ASGI middleware rather than a string type on each model: it also covers routes and models added
later, and it runs before anything could be half-written.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

# C0 and C1 controls but tab, LF, CR; and the bidirectional overrides and isolates, which make a name or
# label display differently from what it is (a staff screen showing an address label reversed).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
CODE = "control_character"
# No operation takes a JSON body anywhere near this; a bigger one is refused (413) rather than passed on
# unchecked, which would let padding carry a NUL past the guard.
MAX_JSON_BODY = 1 << 20
# Deeper JSON than any of our bodies is refused before it is parsed: the C parser recurses once per
# level, and a process whose recursion limit a library raised (py_ecc, under web3, sets 100,000)
# overflows the C stack and dies on "[[[[…" instead of raising RecursionError.
MAX_JSON_DEPTH = 64


def _nested_deeper_than(body: bytes, limit: int) -> bool:
    """True if `body`'s brackets (outside strings) nest deeper than `limit`; no parsing, no recursion."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # closing quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _first_bad(value: Any, where: str) -> str | None:
    """The dotted location of the first string holding a control character, or None."""
    if isinstance(value, str):
        return where if CONTROL.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}"
            if CONTROL.search(key):
                return where
            found = _first_bad(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_bad(item, f"{where}.{index}")
            if found:
                return found
    return None


def _is_json(scope: Scope) -> bool:
    """A body the framework will read as JSON: a JSON media type, or none at all (FastAPI then parses
    the body as JSON, so a guard that only looked at declared JSON would be bypassed by dropping it)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return True


class ControlCharacterGuard:
    """ASGI middleware: 422 `control_character` for any control character in path, query or JSON body;
    413 for a JSON body over `MAX_JSON_BODY`."""

    def __init__(self, app: ASGIApp, *, raw_body_paths: frozenset[str] = frozenset()) -> None:
        """`raw_body_paths`: routes that verify a signature over the raw body themselves (the bank's
        webhook). Their bodies are the signer's to define and are left to the route, so an unsigned
        sender learns nothing before the signature check and the signer's retry contract is unchanged."""
        self.app = app
        self.raw_body_paths = raw_body_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = self._in_url(scope)
        replay = receive
        if field is None and _is_json(scope) and scope.get("path") not in self.raw_body_paths:
            body, more = await self._read(receive)
            if more:
                too_big = problem_response(
                    Request(scope),
                    413,
                    code="body_too_large",
                    detail=f"bodies are limited to {MAX_JSON_BODY} bytes",
                )
                await too_big(scope, receive, send)
                return
            try:
                if _nested_deeper_than(body, MAX_JSON_DEPTH):
                    raise RecursionError
                field = _first_bad(json.loads(body), "body") if body else None
            except ValueError:
                field = None  # not JSON after all: the route's own validation answers
            except RecursionError:  # "[[[[…" deeper than any body of ours: refused unparsed
                deep = problem_response(
                    Request(scope),
                    422,
                    code="body_too_deep",
                    detail="the JSON body is nested too deeply",
                    errors=[{"field": "body", "message": "nested too deeply", "type": "body_too_deep"}],
                )
                await deep(scope, receive, send)
                return
            replay = self._replay(body, receive, more)
        if field is None:
            await self.app(scope, replay, send)
            return
        response = problem_response(
            Request(scope),
            422,
            code=CODE,
            detail=f"invalid input: {field} contains a control character",
            errors=[{"field": field, "message": "control characters are not allowed", "type": CODE}],
        )
        await response(scope, replay, send)

    @staticmethod
    def _in_url(scope: Scope) -> str | None:
        if CONTROL.search(scope.get("path", "")):
            return "path"
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True):
            if CONTROL.search(name) or CONTROL.search(value):
                return f"query.{CONTROL.sub('', name)}"
        return None

    @staticmethod
    async def _read(receive: Receive) -> tuple[bytes, bool]:
        """The body up to the checked size; `more` when it goes on beyond that."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), False
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), False
            if size > MAX_JSON_BODY:
                return b"".join(chunks), True

    @staticmethod
    def _replay(body: bytes, receive: Receive, more: bool) -> Receive:
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await receive()

        return replay

"""Keep secrets out of every log line, whichever library writes it.

`install()` wraps the logging module's record factory, so each record is scrubbed once, when it is
made, before any handler, formatter or test capture sees it: uvicorn's own lines (a WebSocket URL with
`?token=`), SQLAlchemy and psycopg errors, Temporal's, ours. The formatted message and the formatted
traceback are both scrubbed, then frozen on the record (`msg` without `args`, `exc_text`).

What is replaced, by shape rather than by knowing where it came from:
- JWT-shaped strings (`eyJ….….…`): access, refresh, email and approval tokens;
- `Bearer <anything>` and `token=`/`ticket=`/`code=`/`password=`/`secret=`/`key=`… query parameters;
- values of keys that name a secret (`"password": …`, `password_hash=…`, `twofa_secret`, `api_key` …);
- argon2 password hashes, wherever they appear;
- SQL parameter lists in SQLAlchemy errors, and the input PostgreSQL quotes back in its errors
  (`Key (column)=(value)`, `invalid input syntax for type …: "value"`, `Failing row contains (…)`);
  the engines also run with `hide_parameters=True`, this catches whatever else prints them;
- email addresses (personal data: an id is enough to follow a customer through the logs).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEYS = (
    r"password(?:_hash)?|current_password|new_password|passwd|secret|[a-z_]*_secret|twofa_secret|"
    r"api[_-]?key|[a-z_]*_api_key|access_token|refresh_token|id_token|token|ticket|authorization|"
    r"x-totp-code|totp_code|signature|x-signature|cookie|set-cookie"
)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # SQLAlchemy appends "[parameters: {...}]" (possibly long, possibly multi-line) to DB errors.
    (re.compile(r"\[parameters: .*?\](?=\n|\s*\(Background|\s*$)", re.DOTALL), f"[parameters: {REDACTED}]"),
    # PostgreSQL's "DETAIL:  Key (email)=(alice@example.com) already exists."
    (re.compile(r"(Key \([^)]*\)=\()[^)]*(\))"), rf"\1{REDACTED}\2"),
    # PostgreSQL quotes the offending input back: 'invalid input syntax for type integer: "…"', and a
    # constraint's DETAIL shows the whole row: "Failing row contains (…)".
    (
        re.compile(r"(invalid input (?:syntax|value) for [^:\n]*: )\"[^\n]*?\"(?=\s*$|\n)", re.M),
        rf'\1"{REDACTED}"',
    ),
    (re.compile(r"(Failing row contains \().*?(\)\.?)(?=\s*$|\n)", re.M), rf"\1{REDACTED}\2"),
    (re.compile(r"\$argon2(?:id|i|d)\$[^\s'\"]+"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*"), REDACTED),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), rf"\1 {REDACTED}"),
    # key=value in URLs, forms and reprs: ?token=…, &password=…, password_hash='…'
    (
        re.compile(
            rf"(?i)(\b(?:{_SECRET_KEYS})\s*=\s*)(?!\[REDACTED\])('[^']*'|\"[^\"]*\"|[^\s&,;)}}\]\"']+)"
        ),
        rf"\1{REDACTED}",
    ),
    # "key": "value" and 'key': 'value' in JSON and dict reprs.
    (
        re.compile(rf"(?i)([\"'](?:{_SECRET_KEYS})[\"']\s*:\s*)(\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^\s,}}\]]+)"),
        rf'\1"{REDACTED}"',
    ),
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), "[email]"),
)


def redact(text: str) -> str:
    """`text` with every secret-shaped part replaced."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """Format the record's message and traceback now, scrubbed, and freeze them on the record."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: keep what there is, scrubbed
        message = f"{record.msg!r} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


_installed: Callable[..., logging.LogRecord] | None = None


def install() -> None:
    """Scrub every log record this process makes from now on (idempotent)."""
    global _installed
    current = logging.getLogRecordFactory()
    if current is _installed:
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return scrub(current(*args, **kwargs))

    _installed = factory
    logging.setLogRecordFactory(factory)

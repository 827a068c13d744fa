"""`Idempotency-Key` for unsafe customer requests (`POST /orders`), kept in PostgreSQL so it holds across
API processes.

A key belongs to one customer. The first request with it claims a row (`INSERT … ON CONFLICT DO NOTHING`:
exactly one of several concurrent requests wins) holding a fingerprint of the request. Then:

- the same key and the same request, after the first finished: the first response, replayed as it was
  (status and body), with `Idempotent-Replayed: true`;
- the same key while the first is still being processed: 409 `idempotency_in_flight` (retry shortly);
- the same key with a different request: 422 `idempotency_key_reused`.

If the first request fails (a 4xx such as a wrong TOTP code, or Temporal unreachable) the claim is
released, so the customer can retry with the same key; nothing is replayed that did not happen. A claim
left in flight by a crashed process is taken over after `STALE_AFTER`; routes make that safe by deriving
their business id from the key (`derived_id`), so the retry re-finds what the crashed attempt started.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import ProblemError

STALE_AFTER = timedelta(seconds=60)
HEADER = "Idempotency-Key"
_NAMESPACE = uuid.UUID("6f1d3c5e-8a57-4d0e-9d7e-2f4b1c0a9e31")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="A unique key per intended action (e.g. a UUID). A repeat with the same key and "
        "body returns the first response instead of acting twice.",
    ),
]


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, body: dict[str, Any]) -> str:
    """What identifies "the same request": method, path and the parsed body (key order irrelevant)."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def derived_id(user_id: uuid.UUID, key: str, request_hash: str) -> uuid.UUID:
    """A business id that is the same for every retry of one (customer, key, request)."""
    return uuid.uuid5(_NAMESPACE, f"{user_id}:{key}:{request_hash}")


async def claim(
    engine: AsyncEngine, *, user_id: uuid.UUID, key: str, method: str, path: str, request_hash: str
) -> StoredResponse | None:
    """Claim `key` for this request: None if we may proceed, the stored response to replay, or a problem."""
    async with engine.begin() as conn:
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO api_idempotency_keys (user_id, key, method, path, request_hash, state) "
                    "VALUES (:u, :k, :m, :p, :h, 'in_flight') ON CONFLICT DO NOTHING RETURNING key"
                ),
                {"u": user_id, "k": key, "m": method, "p": path, "h": request_hash},
            )
        ).first()
        if inserted is not None:
            return None
        row = (
            await conn.execute(
                text(
                    "SELECT request_hash, state, response_status, response_body, "
                    "updated_at < now() - make_interval(secs => :stale) AS stale "
                    "FROM api_idempotency_keys WHERE user_id = :u AND key = :k FOR UPDATE"
                ),
                {"u": user_id, "k": key, "stale": STALE_AFTER.total_seconds()},
            )
        ).first()
        if row is None:  # released between our insert and select: treat as a fresh claim next time
            raise ProblemError(409, "idempotency_in_flight", "a request with this key is being processed")
        if row.request_hash != request_hash:
            raise ProblemError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
                errors=[
                    {
                        "field": f"header.{HEADER}",
                        "message": "already used with a different request",
                        "type": "idempotency_key_reused",
                    }
                ],
            )
        if row.state == "done":
            return StoredResponse(int(row.response_status), dict(row.response_body))
        if not row.stale:
            raise ProblemError(
                409,
                "idempotency_in_flight",
                "a request with this key is still being processed; retry shortly",
                headers={"Retry-After": "1"},
            )
        # Left in flight by a process that died: take it over (the route's derived id makes this safe).
        await conn.execute(
            text("UPDATE api_idempotency_keys SET updated_at = now() WHERE user_id = :u AND key = :k"),
            {"u": user_id, "k": key},
        )
        return None


async def complete(
    engine: AsyncEngine, *, user_id: uuid.UUID, key: str, status: int, body: dict[str, Any]
) -> None:
    """Store the response the claimed request got; repeats are answered with it from now on."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE api_idempotency_keys SET state = 'done', response_status = :s, "
                "response_body = CAST(:b AS jsonb), updated_at = now() WHERE user_id = :u AND key = :k"
            ),
            {"u": user_id, "k": key, "s": status, "b": json.dumps(body, default=str)},
        )


async def release(engine: AsyncEngine, *, user_id: uuid.UUID, key: str) -> None:
    """Forget an in-flight claim whose request failed, so a retry with the same key is processed anew."""
    async with engine.begin() as conn:
        await conn.execute(
            text("DELETE FROM api_idempotency_keys WHERE user_id = :u AND key = :k AND state = 'in_flight'"),
            {"u": user_id, "k": key},
        )


async def respond_once(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    key: str | None,
    method: str,
    path: str,
    body: dict[str, Any],
    status: int,
    act: Callable[[uuid.UUID], Awaitable[BaseModel]],
) -> JSONResponse:
    """Run `act(business_id)` once per (customer, key, request) and answer with its result; a repeat gets
    the first answer replayed. Without a key, `act` runs with a fresh id. A failed `act` releases the
    claim (so a retry with the key is processed anew) and its error propagates to the one handler."""
    request_hash = fingerprint(method, path, body)
    if key is None:
        out = await act(uuid.uuid4())
        return JSONResponse(out.model_dump(mode="json"), status_code=status)
    stored = await claim(
        engine, user_id=user_id, key=key, method=method, path=path, request_hash=request_hash
    )
    if stored is not None:
        return JSONResponse(stored.body, status_code=stored.status, headers={"Idempotent-Replayed": "true"})
    try:
        out = await act(derived_id(user_id, key, request_hash))
    except Exception:
        await release(engine, user_id=user_id, key=key)
        raise
    answer = out.model_dump(mode="json")
    await complete(engine, user_id=user_id, key=key, status=status, body=answer)
    return JSONResponse(answer, status_code=status)

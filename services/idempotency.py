"""`Idempotency-Key` for unsafe customer requests (`POST /orders`, `POST /withdrawals`), kept in PostgreSQL so
it holds across API processes. The header itself is declared in `api/idempotency.py`.

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
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import DomainError

STALE_AFTER = timedelta(seconds=60)
HEADER = "Idempotency-Key"
_NAMESPACE = uuid.UUID("6f1d3c5e-8a57-4d0e-9d7e-2f4b1c0a9e31")


class IdempotencyInFlight(DomainError):
    """A request with this key is still being processed. Retry the same request shortly."""

    default_code = "idempotency_in_flight"
    status = 409

    def __init__(self, detail: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s is not None else None


class IdempotencyKeyReused(DomainError):
    """The key was used with a different request. Use a new key for a new request."""

    default_code = "idempotency_key_reused"
    status = 422


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
    """Claim `key` for this request: None if we may proceed, or the stored response to replay.

    Raises `IdempotencyInFlight` or `IdempotencyKeyReused`."""
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
            raise IdempotencyInFlight("a request with this key is being processed")
        if row.request_hash != request_hash:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request", field=f"header.{HEADER}"
            )
        if row.state == "done":
            return StoredResponse(int(row.response_status), dict(row.response_body))
        if not row.stale:
            raise IdempotencyInFlight(
                "a request with this key is still being processed; retry shortly", retry_after_s=1
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


@dataclass(frozen=True)
class Answer:
    """What an idempotent request answers: its own result, or the first one replayed (`replayed`)."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def business_id(user_id: uuid.UUID, key: str | None, request_hash: str) -> uuid.UUID:
    """The id of what the request creates: derived from the key (so a retry re-finds it), or fresh."""
    return derived_id(user_id, key, request_hash) if key else uuid.uuid4()


async def answer_once(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    key: str | None,
    method: str,
    path: str,
    request_hash: str,
    status: int,
    act: Callable[[], Awaitable[dict[str, Any]]],
) -> Answer:
    """Run `act` once per (customer, key, request) and store its answer; a repeat gets that answer replayed.

    Without a key `act` simply runs. A failing `act` releases the claim, so a retry with the same key is
    processed anew, and its error propagates. Check the request before calling this: a refusal of bad
    input then writes nothing at all."""
    if key is None:
        return Answer(status, await act())
    stored = await claim(
        engine, user_id=user_id, key=key, method=method, path=path, request_hash=request_hash
    )
    if stored is not None:
        return Answer(stored.status, stored.body, replayed=True)
    try:
        body = await act()
    except Exception:
        await release(engine, user_id=user_id, key=key)
        raise
    await complete(engine, user_id=user_id, key=key, status=status, body=body)
    return Answer(status, body)

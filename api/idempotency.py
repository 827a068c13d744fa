"""The `Idempotency-Key` header of unsafe customer requests; the claims themselves live in
`services/idempotency.py` (re-exported here, so routes keep one import)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from services.idempotency import (
    HEADER,
    STALE_AFTER,
    Answer,
    IdempotencyInFlight,
    IdempotencyKeyReused,
    StoredResponse,
    answer_once,
    business_id,
    claim,
    complete,
    derived_id,
    fingerprint,
    release,
)

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

__all__ = [
    "HEADER",
    "STALE_AFTER",
    "Answer",
    "IdempotencyInFlight",
    "IdempotencyKey",
    "IdempotencyKeyReused",
    "StoredResponse",
    "answer_once",
    "business_id",
    "claim",
    "complete",
    "derived_id",
    "fingerprint",
    "release",
    "respond_once",
]


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
    """`answer_once` for a route whose act needs the request's business id (derived from the key, so a
    retry names the same withdrawal): runs `act(business_id)` once per (customer, key, request) and answers
    with its model; a repeat gets the first answer replayed, marked `Idempotent-Replayed`."""
    request_hash = fingerprint(method, path, body)
    business = business_id(user_id, key, request_hash)

    async def run() -> dict[str, Any]:
        return (await act(business)).model_dump(mode="json")

    answer = await answer_once(
        engine, user_id=user_id, key=key, method=method, path=path, request_hash=request_hash,
        status=status, act=run,
    )  # fmt: skip
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)

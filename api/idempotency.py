"""The `Idempotency-Key` header of unsafe customer requests; the claims themselves live in
`services/idempotency.py` (re-exported here, so routes keep one import)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header

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
]

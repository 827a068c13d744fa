"""The KYC vendor's webhooks, after their digest verified: each raw body recorded once, so a redelivery is
acknowledged without signalling the saga again, and the open submission an applicant belongs to."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.compliance import KYC_OPEN_STATUSES


async def open_submission_for_applicant(engine: AsyncEngine, applicant_id: str) -> uuid.UUID | None:
    async with engine.connect() as conn:
        found: uuid.UUID | None = (
            await conn.execute(
                text(
                    "SELECT id FROM kyc_submissions WHERE provider_applicant_id = :a AND status = ANY(:open) "
                    "ORDER BY created_at DESC LIMIT 1"
                ),
                {"a": applicant_id, "open": list(KYC_OPEN_STATUSES)},
            )
        ).scalar_one_or_none()
    return found


async def record_vendor_event(
    engine: AsyncEngine,
    *,
    raw: bytes,
    applicant_id: str,
    kind: str,
    body: dict[str, Any],
    submission_id: uuid.UUID | None,
) -> tuple[str, bool]:
    """Keep a verified webhook once per raw body; returns (its digest, whether it was already passed on)."""
    digest = hashlib.sha256(raw).hexdigest()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO kyc_vendor_events (digest, applicant_id, type, submission_id, body) "
                "VALUES (:d, :a, :t, :s, CAST(:b AS jsonb)) ON CONFLICT (digest) DO NOTHING"
            ),
            {"d": digest, "a": applicant_id, "t": kind, "s": submission_id, "b": json.dumps(body)},
        )
        signalled = (
            await conn.execute(
                text("SELECT signalled_at FROM kyc_vendor_events WHERE digest = :d"), {"d": digest}
            )
        ).scalar_one()
    return digest, signalled is not None


async def mark_event_signalled(engine: AsyncEngine, digest: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE kyc_vendor_events SET signalled_at = now() WHERE digest = :d"), {"d": digest}
        )

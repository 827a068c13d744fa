"""Compliance's side of KYC: who may review a submission, and the review queue (staff only: it carries the
screening matches with their explanations, which a customer never sees)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


async def review_problem(conn: AsyncConnection, reviewer_id: uuid.UUID, customer_id: uuid.UUID) -> str | None:
    """None if `reviewer_id` is an active compliance user other than the customer, else why not."""
    if reviewer_id == customer_id:
        return "a customer cannot review their own KYC"
    row = (
        await conn.execute(text("SELECT roles, status FROM users WHERE id = :u"), {"u": reviewer_id})
    ).first()
    if row is None:
        return "no such user"
    if "compliance" not in (row.roles or []) or row.status != "ACTIVE":
        return "only active users with the compliance role may review KYC"
    return None


class ReviewItem(BaseModel):
    """A submission in compliance's queue: staff only (it carries the screening explanation)."""

    id: uuid.UUID
    user_id: uuid.UUID
    tier: int
    status: str
    details: dict[str, Any] | None
    vendor_result: dict[str, Any] | None
    screening: list[dict[str, Any]]
    evidence: list[dict[str, Any]]
    created_at: datetime


async def review_queue(engine: AsyncEngine) -> list[ReviewItem]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT s.id, s.user_id, s.tier, s.status, s.details, s.vendor_result, s.created_at, "
                    "coalesce((SELECT jsonb_agg(jsonb_build_object('check_type', a.check_type, "
                    "'result', a.result, 'score', a.risk_score, 'details', a.details) "
                    "ORDER BY a.created_at DESC) FROM aml_checks a "
                    "WHERE a.user_id = s.user_id AND a.result = 'HIT'), '[]') AS screening, "
                    "coalesce((SELECT jsonb_agg(jsonb_build_object('id', e.id, 'filename', e.filename, "
                    "'content_type', e.content_type, 'sha256', e.sha256)) FROM kyc_evidence e "
                    "WHERE e.submission_id = s.id), '[]') AS evidence "
                    "FROM kyc_submissions s WHERE s.status = 'IN_REVIEW' ORDER BY s.created_at"
                )
            )
        ).all()
    return [
        ReviewItem(
            id=r.id,
            user_id=r.user_id,
            tier=r.tier,
            status=r.status,
            details=r.details,
            vendor_result=r.vendor_result,
            screening=r.screening,
            evidence=r.evidence,
            created_at=r.created_at,
        )
        for r in rows
    ]

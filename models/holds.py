"""I/O of the periodic hold audit (pydantic: it crosses Temporal)."""

from __future__ import annotations

import uuid
from decimal import Decimal

from pydantic import BaseModel, Field


class HoldAuditInput(BaseModel):
    limit: int = 1000  # at most this many holds listed per run (the oldest first)


class OrphanedHoldReport(BaseModel):
    hold_id: uuid.UUID
    reference_type: str
    reference_id: uuid.UUID
    currency: str
    remaining: Decimal
    owner_status: str | None = None  # None: no such order or withdrawal


class HoldAuditResult(BaseModel):
    orphaned: list[OrphanedHoldReport] = Field(default_factory=list)

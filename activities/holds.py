"""Hold activities: the periodic audit of holds whose owner has finished (see services/holds.py)."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from models.holds import HoldAuditInput, HoldAuditResult, OrphanedHoldReport
from services import holds

log = logging.getLogger("activities.holds")


class HoldActivities:
    def __init__(self, *, engine: AsyncEngine) -> None:
        self._engine = engine

    @activity.defn(name="holds.audit")
    async def audit(self, data: HoldAuditInput) -> HoldAuditResult:
        """List every active hold whose order or withdrawal is final (or missing), with an ops alert
        per hold. Reports only: which side of a finished saga the money belongs to is ops' call."""
        async with self._engine.connect() as conn:
            found = await holds.orphaned_holds(conn, limit=data.limit)
        for h in found:
            log.error(
                "OPS ALERT hold %s keeps %s %s reserved for %s %s, which is %s",
                h.hold_id, h.remaining, h.currency, h.reference_type, h.reference_id,
                (h.owner_status or "missing").lower(),
            )  # fmt: skip
        return HoldAuditResult(
            orphaned=[
                OrphanedHoldReport(
                    hold_id=h.hold_id,
                    reference_type=h.reference_type,
                    reference_id=h.reference_id,
                    currency=h.currency,
                    remaining=h.remaining,
                    owner_status=h.owner_status,
                )
                for h in found
            ]
        )

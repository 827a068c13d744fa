"""The circuit breaker's way back: a currency halted by reconciliation resumes only after enough clean
runs in a row and two different staff acknowledging with a reason (or two staff overriding); audited."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.errors import DomainError
from services.payments import audit

if TYPE_CHECKING:
    from services.reconciliation.runs import Policy

log = logging.getLogger("reconciliation")


def customer_message(currency: str) -> str:
    """What customers see while a currency is halted by reconciliation: never the drift."""
    return f"withdrawals of {currency} are paused for checks"


class ResumeRefused(DomainError):
    """The acknowledgement cannot be taken (same staff twice, not halted, not enough clean runs yet).
    Tell the staff member why; nothing was written."""

    default_code = "resume_refused"
    status = 409


async def acknowledge(
    engine: AsyncEngine,
    *,
    currency: str,
    staff_id: uuid.UUID,
    reason: str,
    override: bool,
    policy: Policy,
) -> bool:
    """Record one staff acknowledgement; lift the halt when it completes the resume. Returns whether the
    currency is resumed.

    Resume: `clean_runs_to_resume` clean runs since the halt and two different staff acknowledging.
    Override: two different staff, whatever the runs say (audited as such)."""
    if not reason.strip():
        raise ResumeRefused("a reason is required")
    kind = "override" if override else "resume"
    async with engine.begin() as conn:
        halt = (
            await conn.execute(
                text("SELECT run_id, clean_runs FROM reconciliation_halts WHERE currency = :c FOR UPDATE"),
                {"c": currency},
            )
        ).first()
        if halt is None:
            raise ResumeRefused(f"{currency} is not halted by reconciliation")
        run_id, clean = halt
        if not override and clean < policy.clean_runs_to_resume:
            raise ResumeRefused(
                f"{currency} needs {policy.clean_runs_to_resume} clean runs in a row before resuming; "
                f"{clean} so far"
            )
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO reconciliation_acks (id, currency, halt_run_id, staff_id, kind, reason) "
                    "VALUES (:id, :c, :r, :s, :k, :why) "
                    "ON CONFLICT (currency, halt_run_id, staff_id) DO NOTHING "
                    "RETURNING 1"
                ),
                {"id": uuid.uuid4(), "c": currency, "r": run_id, "s": staff_id, "k": kind, "why": reason},
            )
        ).first()
        if inserted is None:
            raise ResumeRefused("this staff member has already acknowledged this halt; a second person must")
        await audit(
            conn, f"reconciliation.{kind}_ack", actor_id=staff_id, actor_type="staff", target_type="currency",
            target_id=currency, run_id=str(run_id), reason=reason,
        )  # fmt: skip
        acks = (
            await conn.execute(
                text(
                    "SELECT count(DISTINCT staff_id) FILTER (WHERE kind = :k), count(DISTINCT staff_id) "
                    "FROM reconciliation_acks WHERE currency = :c AND halt_run_id = :r"
                ),
                {"c": currency, "r": run_id, "k": kind},
            )
        ).one()
        if acks[1] < 2 or (override and acks[0] < 2):
            return False
        await conn.execute(text("DELETE FROM reconciliation_halts WHERE currency = :c"), {"c": currency})
        await conn.execute(
            text("DELETE FROM currency_halts WHERE currency = :c AND reason = :r"),
            {"c": currency, "r": customer_message(currency)},
        )
        await audit(
            conn, "reconciliation.resume", actor_id=staff_id, actor_type="staff", target_type="currency",
            target_id=currency, run_id=str(run_id), override=override,
        )  # fmt: skip
        log.warning("reconciliation halt of %s lifted (%s) after two acknowledgements", currency, kind)
    return True

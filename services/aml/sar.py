"""The records behind the SAR workflow (workflows/sar.py): a compliance officer's proven decision on a case,
the suspicious activity report filed with the NCA, its DAML consent request and deadlines, and the case's
withdrawals that a decision lets go or refuses.

Each step is idempotent by the case id (one report per case; a closed case stays closed with its
outcome), so an activity retried by Temporal changes nothing twice. The withdrawal sagas hear the
decision as the signal `compliance_decision` with a decision token for that withdrawal
(`withdrawal_decisions`); their own activity verifies it, as for any other decision.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.aml_cases_api import SarDecision
from services.alerts import audit
from services.aml import freeze, sar_deadlines
from services.aml.cases import CaseRefused, case_withdrawals, close_case_in, lock_case
from services.decision_tokens import DecisionTokens, ProofInvalid

COMPLIANCE_ROLE = "compliance"


def decision_detail(decision: SarDecision) -> str:
    """What a decision's token is bound to besides the case: the NCA reference of a filing."""
    return decision.nca_reference if decision.kind == "file_sar" else ""


async def verify_decision(
    engine: AsyncEngine, tokens: DecisionTokens, *, case_id: uuid.UUID, decision: SarDecision, now: datetime
) -> str | None:
    """None when the decision is proven (a valid token for this officer, case and action, and the officer
    holds the compliance role now); otherwise the refusal, audited."""
    problem: str | None = None
    try:
        tokens.verify(
            decision.token, actor_id=decision.staff_id, action=f"aml_case_{decision.kind}", now=now,
            detail=decision_detail(decision), case_id=case_id,
        )  # fmt: skip
    except ProofInvalid as e:
        problem = str(e)
    async with engine.begin() as conn:
        if problem is None:
            row = (
                await conn.execute(
                    text("SELECT roles, status FROM users WHERE id = :u"), {"u": decision.staff_id}
                )
            ).first()
            if row is None or COMPLIANCE_ROLE not in row[0] or row[1] != "ACTIVE":
                problem = "the decision is not by an active compliance user"
        await audit(
            conn, f"aml.case.{decision.kind}" + ("" if problem is None else ".refused"),
            actor_id=decision.staff_id if problem is None else None, actor_type="staff",
            target_type="aml_case",
            target_id=str(case_id), claimed_actor=str(decision.staff_id), refusal=problem,
        )  # fmt: skip
    return problem


async def clear_case(
    engine: AsyncEngine,
    *,
    case_id: uuid.UUID,
    staff_id: uuid.UUID,
    reason: str,
    outcome: str = "false_positive",
) -> None:
    """The officer cleared the case: close it with `outcome` (false_positive unless the alert was useful)."""
    async with engine.begin() as conn:
        _, status = await lock_case(conn, case_id)
        if status != "closed":
            await close_case_in(
                conn, case_id=case_id, outcome=outcome, staff_id=staff_id, note=reason or "cleared"
            )


async def freeze_account(
    engine: AsyncEngine, *, case_id: uuid.UUID, staff_id: uuid.UUID, reason: str
) -> None:
    async with engine.begin() as conn:
        user_id, _ = await lock_case(conn, case_id)
        await freeze.freeze_customer(conn, user_id=user_id, staff_id=staff_id, reason=reason, case_id=case_id)


async def file_report(
    engine: AsyncEngine, *, case_id: uuid.UUID, decision: SarDecision, requested_at: datetime
) -> datetime | None:
    """Record the report (once per case); with a DAML request, the end of its notice period (from
    `requested_at`, the workflow's clock), else None. The DAML withdrawal must be an unfinished withdrawal
    of the case."""
    async with engine.begin() as conn:
        await lock_case(conn, case_id)
        existing = (
            await conn.execute(
                text("SELECT notice_ends_at, nca_reference FROM aml_sar_reports WHERE case_id = :c"),
                {"c": case_id},
            )
        ).first()
        if existing is not None:
            if existing[1] != decision.nca_reference:
                raise CaseRefused("a report was already filed for this case")
            return existing[0]
        ends_at: datetime | None = None
        if decision.daml_withdrawal_id is not None:
            if decision.daml_withdrawal_id not in await case_withdrawals(conn, case_id):
                raise CaseRefused("the DAML request must name an unfinished withdrawal of this case")
            ends_at = sar_deadlines.notice_period_ends(requested_at)
        await conn.execute(
            text(
                "INSERT INTO aml_sar_reports (id, case_id, nca_reference, narrative, attachments, filed_by, "
                "filed_at, daml_state, daml_withdrawal_id, notice_ends_at) VALUES (:id, :c, :ref, :n, "
                "CAST(:att AS jsonb), :by, :at, :st, :w, :ends)"
            ),
            {
                "id": uuid.uuid4(), "c": case_id, "ref": decision.nca_reference, "n": decision.narrative,
                "att": json.dumps(decision.attachments), "by": decision.staff_id, "at": requested_at,
                "st": "none" if ends_at is None else "awaiting_consent", "w": decision.daml_withdrawal_id,
                "ends": ends_at,
            },
        )  # fmt: skip
        await conn.execute(
            text("UPDATE aml_cases SET status = 'investigating' WHERE id = :c AND status = 'pending'"),
            {"c": case_id},
        )
        await audit(
            conn, "aml.sar.filed", actor_id=decision.staff_id, actor_type="staff", target_type="aml_case",
            target_id=str(case_id), nca_reference=decision.nca_reference,
            daml_withdrawal_id=str(decision.daml_withdrawal_id) if decision.daml_withdrawal_id else None,
            notice_ends_at=ends_at.isoformat() if ends_at else None,
        )  # fmt: skip
    return ends_at


async def record_refusal(
    engine: AsyncEngine, *, case_id: uuid.UUID, staff_id: uuid.UUID, refused_at: datetime
) -> datetime:
    """The NCA refused consent within the notice period: the end of the 31-day moratorium (idempotent)."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT daml_state, moratorium_ends_at FROM aml_sar_reports WHERE case_id = :c FOR UPDATE"
                ),
                {"c": case_id},
            )
        ).first()
        if row is None or row[0] not in ("awaiting_consent", "refused"):
            raise CaseRefused("no DAML request is awaiting consent for this case")
        if row[0] == "refused":
            return row[1]
        ends_at = sar_deadlines.moratorium_ends(refused_at)
        await conn.execute(
            text(
                "UPDATE aml_sar_reports SET daml_state = 'refused', refused_at = :r, moratorium_ends_at = :m "
                "WHERE case_id = :c"
            ),
            {"r": refused_at, "m": ends_at, "c": case_id},
        )
        await audit(
            conn, "aml.daml.refused", actor_id=staff_id, actor_type="staff", target_type="aml_case",
            target_id=str(case_id), moratorium_ends_at=ends_at.isoformat(),
        )  # fmt: skip
    return ends_at


async def record_consent(engine: AsyncEngine, *, case_id: uuid.UUID, how: str) -> uuid.UUID | None:
    """Consent given or deemed (`how`: notice_period_ended, moratorium_ended, nca_consented); the DAML
    withdrawal to let go (None when it already finished)."""
    state = "moratorium_ended" if how == "moratorium_ended" else "consented"
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT daml_withdrawal_id, daml_state FROM aml_sar_reports WHERE case_id = :c FOR UPDATE"
                ),
                {"c": case_id},
            )
        ).first()
        if row is None:
            raise CaseRefused("no report with a DAML request for this case")
        if row[1] in ("awaiting_consent", "refused"):
            await conn.execute(
                text("UPDATE aml_sar_reports SET daml_state = :s WHERE case_id = :c"),
                {"s": state, "c": case_id},
            )
            await audit(
                conn, f"aml.daml.{how}", actor_id=None, actor_type="system", target_type="aml_case",
                target_id=str(case_id), withdrawal_id=str(row[0]),
            )  # fmt: skip
        unfinished = await case_withdrawals(conn, case_id)
    return row[0] if row[0] in unfinished else None


async def record_decline(engine: AsyncEngine, *, case_id: uuid.UUID, staff_id: uuid.UUID) -> None:
    """Compliance declined while a DAML request was open: the report says so, not "awaiting consent"
    (idempotent; a request already consented to or ended keeps its state)."""
    async with engine.begin() as conn:
        updated = await conn.execute(
            text(
                "UPDATE aml_sar_reports SET daml_state = 'declined' "
                "WHERE case_id = :c AND daml_state IN ('awaiting_consent', 'refused')"
            ),
            {"c": case_id},
        )
        if updated.rowcount:
            await audit(
                conn, "aml.daml.declined", actor_id=staff_id, actor_type="staff", target_type="aml_case",
                target_id=str(case_id),
            )  # fmt: skip


async def withdrawal_decisions(
    engine: AsyncEngine,
    tokens: DecisionTokens,
    *,
    case_id: uuid.UUID,
    staff_id: uuid.UUID,
    decision: str,
    now: datetime,
    only: uuid.UUID | None = None,
) -> list[tuple[uuid.UUID, str]]:
    """(withdrawal, token) for each unfinished withdrawal of the case (or just `only`): the proof the
    withdrawal saga verifies with the `compliance_decision` signal (action `aml_clear` / `aml_decline`)."""
    async with engine.connect() as conn:
        ids = await case_withdrawals(conn, case_id)
    if only is not None:
        ids = [w for w in ids if w == only]
    action = f"aml_{decision}"
    return [(w, tokens.issue(actor_id=staff_id, action=action, now=now, withdrawal_id=w)) for w in ids]


async def case_is_closed(engine: AsyncEngine, case_id: uuid.UUID) -> bool:
    """Whether the case is closed (by its outcome through the compliance API, or by the SAR saga)."""
    async with engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM aml_cases WHERE id = :id"), {"id": case_id})
        ).scalar()
    return status == "closed"

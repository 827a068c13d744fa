"""Screening one transaction: every published version evaluates it, the live one decides.

The moment of evaluation is the transaction's own time (a withdrawal's request, a deposit's credit, an
order's last fill), never the clock of whoever asks: a retried activity, a replayed saga and the backtest
all see the same history and reach the same answer. Once the live version has recorded alerts for a
subject, their recorded outcome is the answer (a retry never changes its mind, even if history before
that moment changed meanwhile).

Shadow versions (published, mode shadow) are evaluated next to the live one: their alerts are recorded
with `shadow = true` and never open cases or hold money.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import AmlOutcome, AmlRuleVersion, AmlSubjectType
from services.aml.alerts import record_alerts
from services.aml.evaluation import Evaluation, evaluate
from services.aml.features import Windows, features_for
from services.aml.versions import ActiveVersion, active_versions, ensure_seed_versions
from services.errors import DomainError


class AmlSubjectNotFound(DomainError):
    """The transaction to screen does not exist (yet): the caller retries; it is written before it is
    screened."""

    default_code = "aml_subject_not_found"
    status = 404


@dataclass(frozen=True)
class Screening:
    """The live version's answer for one subject (approve when no version is live)."""

    outcome: AmlOutcome
    score: int = 0
    rules: tuple[str, ...] = ()
    case_id: uuid.UUID | None = None


_SUBJECT_SQL = {
    AmlSubjectType.WITHDRAWAL: "SELECT user_id, created_at FROM withdrawals WHERE id = CAST(:id AS uuid)",
    AmlSubjectType.DEPOSIT: "SELECT user_id, created_at FROM deposits WHERE id = CAST(:id AS uuid)",
    AmlSubjectType.TRADE: (
        "SELECT user_id, max(executed_at) AS created_at FROM trades WHERE order_id = CAST(:id AS uuid) "
        "GROUP BY user_id"
    ),
}


async def subject_moment(
    conn: AsyncConnection, subject_type: AmlSubjectType, subject_id: str
) -> tuple[uuid.UUID, datetime]:
    """Whose transaction it is and when it happened."""
    row = (await conn.execute(text(_SUBJECT_SQL[subject_type]), {"id": subject_id})).first()
    if row is None or row.user_id is None:
        raise AmlSubjectNotFound(f"no {subject_type.value} {subject_id} to screen")
    return row.user_id, row.created_at


async def evaluate_version(
    conn: AsyncConnection,
    version: ActiveVersion,
    *,
    user_id: uuid.UUID,
    subject_type: AmlSubjectType,
    subject_id: str,
    at: datetime,
) -> Evaluation:
    """One version's evaluation of one subject at `at` (one features query; nothing written)."""
    features = await features_for(
        conn,
        Windows.of(version.rules),
        user_id=user_id,
        subject_type=subject_type,
        subject_id=subject_id,
        at=at,
    )
    return evaluate(version.rules, features, subject_type, at)


async def screen(engine: AsyncEngine, subject_type: AmlSubjectType | str, subject_id: str) -> Screening:
    """Evaluate one transaction under every published version and record the alerts; the live answer.

    Idempotent (alerts are unique per version, rule and subject; see the module docstring)."""
    subject = AmlSubjectType(subject_type)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        conn = await session.connection()
        versions = await active_versions(conn)
        if not versions:
            await ensure_seed_versions(conn)
            versions = await active_versions(conn)
        user_id, at = await subject_moment(conn, subject, subject_id)
        answer = Screening(outcome=AmlOutcome.APPROVE)
        for version in versions:
            if not version.shadow:
                recorded = await recorded_screening(conn, version.id, subject, subject_id)
                if recorded is not None:
                    answer = recorded
                    continue
            result = await evaluate_version(
                conn, version, user_id=user_id, subject_type=subject, subject_id=subject_id, at=at
            )
            case = await record_alerts(
                session,
                user_id=user_id,
                subject_type=subject,
                subject_id=subject_id,
                hits=result.hits,
                rule_version=version_row(version),
                outcome=result.outcome,
            )
            if not version.shadow:
                answer = Screening(
                    outcome=result.outcome,
                    score=result.score,
                    rules=tuple(h.rule_code for h in result.hits),
                    case_id=case.id if case is not None else None,
                )
        await session.commit()
    return answer


async def recorded_screening(
    conn: AsyncConnection, version_id: uuid.UUID, subject: AmlSubjectType, subject_id: str
) -> Screening | None:
    """The answer already recorded for this subject under this version (None: no alerts recorded)."""
    rows = (
        await conn.execute(
            text(
                "SELECT rule_code, score, outcome, case_id FROM aml_alerts WHERE rule_version_id = :v "
                "AND subject_type = :t AND subject_id = :s ORDER BY rule_code"
            ),
            {"v": version_id, "t": subject.value, "s": subject_id},
        )
    ).all()
    if not rows:
        return None
    return Screening(
        outcome=AmlOutcome(rows[0].outcome),
        score=sum(r.score for r in rows),
        rules=tuple(r.rule_code for r in rows),
        case_id=rows[0].case_id,
    )


def version_row(version: ActiveVersion) -> AmlRuleVersion:
    """The version as `record_alerts` takes it (a detached row: only id, mode and rules are read)."""
    return AmlRuleVersion(
        id=version.id,
        version=version.rules.version,
        status="published",
        mode=version.rules.mode.value,
        rules=version.stored,
    )

"""Recording an evaluation's hits as alerts, and grouping a customer's live alerts into one open case.

Idempotent by construction: an alert is unique per (rule set version, rule, subject), so a retried
activity or a re-run sweep inserts nothing twice, and the partial unique index on open cases means two
concurrent evaluations for one customer join one case instead of opening two. Shadow alerts are recorded
(for comparing versions) and never join a case.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import (
    AmlAlert,
    AmlCase,
    AmlCaseStatus,
    AmlOutcome,
    AmlRuleVersion,
    AmlSubjectType,
    RuleHit,
    RuleVersionMode,
)
from services.aml.retention import ended_relationship
from services.aml.scoring import outcome_for

CASE_DUE = timedelta(days=30)
OPEN_CASE_STATUSES = (AmlCaseStatus.PENDING.value, AmlCaseStatus.INVESTIGATING.value)


async def record_alerts(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    subject_type: AmlSubjectType | str,
    subject_id: str,
    hits: Sequence[RuleHit],
    rule_version: AmlRuleVersion,
    outcome: AmlOutcome | None = None,
    now: datetime | None = None,
) -> AmlCase | None:
    """Insert one alert per hit (idempotently) and attach the live ones to the customer's open case.

    Returns the case the live alerts belong to (opened, due in 30 days, when the customer had none open),
    or None for no hits and for a shadow version. `outcome` defaults to what the summed score means under
    the version's thresholds. The caller commits.
    """
    if not hits:
        return None
    subject = AmlSubjectType(subject_type).value
    if outcome is None:
        outcome = outcome_for(sum(h.score for h in hits), rule_version.rules)
    shadow = rule_version.mode == RuleVersionMode.SHADOW
    # Raised after the relationship ended (a late sweep): dated like the customer's other records.
    retention_until = await ended_relationship(await session.connection(), user_id)
    rows = [
        {
            "id": uuid.uuid4(),
            "user_id": user_id,
            "rule_version_id": rule_version.id,
            "rule_code": h.rule_code,
            "score": h.score,
            "outcome": AmlOutcome(outcome).value,
            "subject_type": subject,
            "subject_id": subject_id,
            "details": h.details,
            "shadow": shadow,
            "retention_until": retention_until,
        }
        for h in hits
    ]
    await session.exec(
        insert(AmlAlert).values(rows).on_conflict_do_nothing(constraint="uq_aml_alerts_subject")
    )
    if shadow:
        return None

    codes = [h.rule_code for h in hits]
    subject_alerts = (
        col(AmlAlert.rule_version_id) == rule_version.id,
        col(AmlAlert.subject_type) == subject,
        col(AmlAlert.subject_id) == subject_id,
        col(AmlAlert.rule_code).in_(codes),
    )
    unattached = (
        await session.exec(select(AmlAlert.id).where(*subject_alerts, col(AmlAlert.case_id).is_(None)))
    ).all()
    if not unattached:
        # A retry: the alerts already belong to a case.
        case_id = (
            await session.exec(
                select(AmlAlert.case_id).where(*subject_alerts, col(AmlAlert.case_id).is_not(None)).limit(1)
            )
        ).first()
        return None if case_id is None else await session.get(AmlCase, case_id)

    case = await open_case_for(session, user_id=user_id, now=now, retention_until=retention_until)
    await session.exec(update(AmlAlert).where(col(AmlAlert.id).in_(unattached)).values(case_id=case.id))
    return case


async def open_case_for(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    now: datetime | None = None,
    retention_until: datetime | None = None,
) -> AmlCase:
    """The customer's open case, opened (pending, due in 30 days) when there is none.

    Insert-or-nothing on the one-open-case-per-customer index, then read: concurrent callers agree."""
    opened = now or (await session.exec(select(func.now()))).one()
    await session.exec(
        insert(AmlCase)
        .values(
            id=uuid.uuid4(),
            user_id=user_id,
            status=AmlCaseStatus.PENDING.value,
            due_at=opened + CASE_DUE,
            opened_at=opened,
            retention_until=retention_until,
        )
        .on_conflict_do_nothing(
            index_elements=["user_id"],
            index_where=col(AmlCase.status).in_(OPEN_CASE_STATUSES),
        )
    )
    case = (
        await session.exec(
            select(AmlCase).where(
                col(AmlCase.user_id) == user_id, col(AmlCase.status).in_(OPEN_CASE_STATUSES)
            )
        )
    ).one()
    return case

"""Alerts are recorded once per rule and subject, live ones join the customer's one open case, shadow
ones never do."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import AmlAlert, AmlCase, AmlOutcome, AmlRuleVersion, RuleHit, RuleVersionMode
from services.aml.alerts import record_alerts

THRESHOLDS = {"review": 20, "block_and_review": 50, "decline": 100}


async def _user(session: AsyncSession) -> uuid.UUID:
    uid = uuid.uuid4()
    await session.exec(  # type: ignore[call-overload]
        text("INSERT INTO users (id, email, password_hash) VALUES (:id, :e, 'x')").bindparams(
            id=uid, e=f"{uid}@example.com"
        )
    )
    return uid


async def _version(session: AsyncSession, mode: RuleVersionMode) -> AmlRuleVersion:
    v = AmlRuleVersion(
        version=f"t-{uuid.uuid4()}", status="draft", mode=mode, rules={"thresholds": THRESHOLDS}
    )
    session.add(v)
    await session.flush()
    return v


async def test_a_retried_evaluation_records_each_alert_once_in_one_open_case(engine: AsyncEngine) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        uid = await _user(session)
        live = await _version(session, RuleVersionMode.LIVE)
        hits = [RuleHit(rule_code="large_transaction", score=30), RuleHit(rule_code="value_24h", score=25)]
        first = await record_alerts(
            session, user_id=uid, subject_type="withdrawal", subject_id="w1", hits=hits, rule_version=live
        )
        again = await record_alerts(
            session, user_id=uid, subject_type="withdrawal", subject_id="w1", hits=hits, rule_version=live
        )
        other = await record_alerts(
            session, user_id=uid, subject_type="deposit", subject_id="d1", hits=hits[:1], rule_version=live
        )
        await session.commit()
        assert first is not None and again is not None and other is not None
        assert first.id == again.id == other.id
        assert first.status == "pending" and first.opened_at is not None
        assert (first.due_at - first.opened_at).days == 30
        alerts = (await session.exec(select(AmlAlert).where(col(AmlAlert.user_id) == uid))).all()
        assert len(alerts) == 3
        assert {a.case_id for a in alerts} == {first.id}
        assert {a.outcome for a in alerts if a.subject_id == "w1"} == {AmlOutcome.BLOCK_AND_REVIEW}
        assert {a.outcome for a in alerts if a.subject_id == "d1"} == {AmlOutcome.REVIEW}


async def test_shadow_alerts_are_recorded_but_open_no_case(engine: AsyncEngine) -> None:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        uid = await _user(session)
        shadow = await _version(session, RuleVersionMode.SHADOW)
        case = await record_alerts(
            session,
            user_id=uid,
            subject_type="customer",
            subject_id=str(uid),
            hits=[RuleHit(rule_code="many_sources", score=200)],
            rule_version=shadow,
        )
        await session.commit()
        assert case is None
        alerts = (await session.exec(select(AmlAlert).where(col(AmlAlert.user_id) == uid))).all()
        assert [(a.shadow, a.case_id, a.outcome) for a in alerts] == [(True, None, "decline")]
        assert (await session.exec(select(AmlCase).where(col(AmlCase.user_id) == uid))).all() == []

"""The SAR workflow's activities: thin, idempotent steps over services/aml/sar.py, keyed by the case id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.errors import application_errors
from config import Settings
from models.aml_cases_api import (
    CaseStep,
    SarFiling,
    SarProofCheck,
    WithdrawalRelease,
    WithdrawalSignal,
)
from services.aml import sar
from services.decision_tokens import DecisionTokens


class SarActivities:
    def __init__(self, *, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._tokens = DecisionTokens.from_secret(settings.jwt_secret)

    @activity.defn(name="aml.sar.verify_decision")
    async def verify_decision(self, check: SarProofCheck) -> str | None:
        """None when the decision is proven; otherwise why not (audited)."""
        return await sar.verify_decision(
            self._engine, self._tokens, case_id=check.case_id, decision=check.decision, now=datetime.now(UTC)
        )

    @activity.defn(name="aml.sar.case_is_closed")
    async def case_is_closed(self, case_id: uuid.UUID) -> bool:
        """Whether the case is closed in the database (the `case_closed` signal is only a nudge)."""
        return await sar.case_is_closed(self._engine, case_id)

    @activity.defn(name="aml.sar.clear_case")
    async def clear_case(self, step: CaseStep) -> None:
        with application_errors():
            assert step.staff_id is not None
            await sar.clear_case(
                self._engine, case_id=step.case_id, staff_id=step.staff_id, reason=step.reason,
                outcome=step.outcome or "false_positive",
            )  # fmt: skip

    @activity.defn(name="aml.sar.freeze_account")
    async def freeze_account(self, step: CaseStep) -> None:
        with application_errors():
            assert step.staff_id is not None
            await sar.freeze_account(
                self._engine, case_id=step.case_id, staff_id=step.staff_id, reason=step.reason
            )

    @activity.defn(name="aml.sar.file_report")
    async def file_report(self, filing: SarFiling) -> datetime | None:
        """The report recorded; the end of the DAML notice period when consent was asked (UK working days
        with England's bank holidays: a calendar is data, so it is read here, never in the workflow)."""
        with application_errors():
            return await sar.file_report(
                self._engine,
                case_id=filing.case_id,
                decision=filing.decision,
                requested_at=filing.requested_at,
            )

    @activity.defn(name="aml.sar.record_refusal")
    async def record_refusal(self, step: CaseStep) -> datetime:
        """The end of the 31-day moratorium that the NCA's refusal starts."""
        with application_errors():
            assert step.staff_id is not None and step.at is not None
            return await sar.record_refusal(
                self._engine, case_id=step.case_id, staff_id=step.staff_id, refused_at=step.at
            )

    @activity.defn(name="aml.sar.record_consent")
    async def record_consent(self, step: CaseStep) -> uuid.UUID | None:
        with application_errors():
            return await sar.record_consent(self._engine, case_id=step.case_id, how=step.outcome)

    @activity.defn(name="aml.sar.record_decline")
    async def record_decline(self, step: CaseStep) -> None:
        """A decline during a DAML request: the report's DAML state becomes `declined`."""
        assert step.staff_id is not None
        await sar.record_decline(self._engine, case_id=step.case_id, staff_id=step.staff_id)

    @activity.defn(name="aml.sar.withdrawal_decisions")
    async def withdrawal_decisions(self, release: WithdrawalRelease) -> list[WithdrawalSignal]:
        """Signed decisions for the case's held withdrawals, which the workflow signals to their sagas."""
        pairs = await sar.withdrawal_decisions(
            self._engine, self._tokens, case_id=release.case_id, staff_id=release.staff_id,
            decision=release.decision, now=datetime.now(UTC), only=release.only,
        )  # fmt: skip
        return [WithdrawalSignal(withdrawal_id=w, token=t) for w, t in pairs]

"""AML monitoring activities: thin, idempotent methods over services/aml.

- `aml_screen_withdrawal` / `aml_screen_deposit` / `aml_screen_trade`: evaluate one transaction under
  every published rule set version and record the alerts, keyed by the transaction's id (a retry records
  nothing twice and answers as the first attempt did). Errors are left to the caller's retry policy.
- `aml_verify_decision`: whether compliance's decision on a held withdrawal carries a valid proof
  (audited either way).
- `aml_sweep`: the scheduled window rules over every customer (heartbeats while it runs).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from activities.heartbeat import heartbeating
from config import Settings
from models.aml import (
    AmlSubjectType,
    ComplianceProofCheck,
    ScreenAnswer,
    ScreenRequest,
    SweepInput,
    SweepResult,
)
from services.aml.decisions import check_compliance_decision
from services.aml.monitor import screen
from services.aml.sweep import sweep
from services.decision_tokens import DecisionTokens


class AmlActivities:
    def __init__(self, *, engine: AsyncEngine, settings: Settings) -> None:
        self._engine = engine
        self._tokens = DecisionTokens.from_secret(settings.jwt_secret)

    async def _screen(self, request: ScreenRequest, expected: AmlSubjectType) -> ScreenAnswer:
        if request.subject_type != expected:
            raise ValueError(f"this activity screens {expected.value}s, not {request.subject_type.value}s")
        found = await screen(self._engine, request.subject_type, request.subject_id)
        return ScreenAnswer(
            outcome=found.outcome, score=found.score, rules=list(found.rules), case_id=found.case_id
        )

    @activity.defn(name="aml_screen_withdrawal")
    async def screen_withdrawal(self, request: ScreenRequest) -> ScreenAnswer:
        """Before the money leaves: the live outcome decides whether the saga goes on, waits or refuses."""
        return await self._screen(request, AmlSubjectType.WITHDRAWAL)

    @activity.defn(name="aml_screen_deposit")
    async def screen_deposit(self, request: ScreenRequest) -> ScreenAnswer:
        """After the credit: alerts only, the credit stands whatever the outcome."""
        return await self._screen(request, AmlSubjectType.DEPOSIT)

    @activity.defn(name="aml_screen_trade")
    async def screen_trade(self, request: ScreenRequest) -> ScreenAnswer:
        """After an order's trades settled (`subject_id` is the order id): alerts only."""
        return await self._screen(request, AmlSubjectType.TRADE)

    @activity.defn(name="aml_verify_decision")
    async def verify_decision(self, check: ComplianceProofCheck) -> bool:
        """Whether compliance's clear/decline on a held withdrawal is proven; audited either way."""
        async with self._engine.begin() as conn:
            problem = await check_compliance_decision(
                conn,
                self._tokens,
                withdrawal_id=check.withdrawal_id,
                decision=check.decision,
                token=check.token,
                staff_id=check.staff_id,
                case_id=check.case_id,
                now=datetime.now(UTC),
            )
        return problem is None

    @activity.defn(name="aml_sweep")
    async def sweep(self, data: SweepInput) -> SweepResult:
        """The window rules over every customer active in their windows, at `data.at` (default now)."""
        at = data.at or datetime.now(UTC)
        done = await heartbeating(sweep(self._engine, at))
        return SweepResult(customers=done.customers, alerts=done.alerts)

"""The FCA PS23/6 gates before a customer's first cryptoasset trade (docs/architecture.md §11; issue 15 item
6).

A customer may place a first order only when all four are passed, in this order of asking:

1. **Personalised risk warning** (addressed to the customer by name) acknowledged, once; the
   acknowledgement names the version it read, and only the current version is accepted.
2. **24-hour cooling-off** from the first request to invest, which is the acknowledgement. The end is a
   durable timer in a small saga (`workflows/first_trade.py`), not a comparison with the clock in the
   order path: the gate opens when the saga writes `cooling_off_completed_at`.
3. **Client categorisation** (restricted / high-net-worth / self-certified sophisticated) with the
   declaration its category requires (`DECLARATIONS`): a customer who fits none cannot be shown the offer.
4. **Appropriateness assessment**: questions live as data (`config/appropriateness.json`: questions,
   options, the right option, which are fundamental, the pass mark). A pass needs the pass mark and every
   fundamental question right; a failed attempt locks the next one for 24 hours and never says which
   answers were wrong. It can be taken only after categorisation.

`enforce` is the order saga's accept-step hook; `status` is what `GET /api/v1/kyc` shows. No Temporal
and no HTTP here: the route starts the cooling-off saga from what `acknowledge_risk_warning` returns.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from models.first_trade_gates import (
    AssessmentResult,
    Categorisation,
    Gate,
    GateStatus,
    RiskWarning,
)
from services import audit as audit_log
from services.errors import DomainError
from services.first_trade_gates_rules import (
    DECLARATIONS,
    GateInputInvalid,
    QuestionnaireSpec,
    check_declaration,
    load_questionnaire,
    score_answers,
)

__all__ = [
    "DECLARATIONS",
    "AppropriatenessLocked",
    "CoolingOff",
    "FirstTradeGateClosed",
    "GateInputInvalid",
    "QuestionnaireSpec",
    "acknowledge_risk_warning",
    "categorise",
    "complete_cooling_off",
    "enforce",
    "gate_statuses",
    "load_questionnaire",
    "risk_warning",
    "status",
    "submit_assessment",
]

RISK_WARNING_VERSION = "ps23-6-v1"
RISK_WARNING = (
    "{name}, this is a high-risk investment. How would you feel if you lost the money you're about to "
    "invest? Don't invest unless you're prepared to lose all the money you invest. Cryptoassets are "
    "high-risk and you should not expect to be protected if something goes wrong: the Financial Services "
    "Compensation Scheme and the Financial Ombudsman Service are unlikely to cover you. Take 2 mins to "
    "learn more."
)

Db = AsyncConnection | AsyncSession


class FirstTradeGateClosed(DomainError):
    """A first trade (or the next step of onboarding) waits for the gate in `code` (`gate_<name>`): the
    customer completes it through `/api/v1/onboarding`; `GET /api/v1/kyc` says what is needed."""

    default_code = "gate"
    status = 403

    def __init__(self, gate: Gate, detail: str) -> None:
        super().__init__(detail, code=f"gate_{gate.value}")
        self.gate = gate


class AppropriatenessLocked(DomainError):
    """The last attempt failed less than 24 hours ago: try again after `retry_after` (also the
    `Retry-After` header)."""

    default_code = "gate_appropriateness_locked"
    status = 429

    def __init__(self, retry_after: datetime, now: datetime) -> None:
        super().__init__(f"the assessment can be taken again from {retry_after.isoformat()}")
        self.retry_after = retry_after
        self.seconds = max(1, int((retry_after - now).total_seconds()))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.seconds)}


# --- reads ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateRow:
    risk_warning_acknowledged_at: datetime | None = None
    cooling_off_started_at: datetime | None = None
    cooling_off_ends_at: datetime | None = None
    cooling_off_completed_at: datetime | None = None
    category: str | None = None
    categorised_at: datetime | None = None
    assessment_passed_at: datetime | None = None
    assessment_locked_until: datetime | None = None


_COLUMNS = (
    "risk_warning_acknowledged_at, cooling_off_started_at, cooling_off_ends_at, cooling_off_completed_at, "
    "category, categorised_at, assessment_passed_at, assessment_locked_until"
)


async def _row(db: Db, user_id: uuid.UUID) -> GateRow:
    row = (
        await db.execute(text(f"SELECT {_COLUMNS} FROM first_trade_gates WHERE user_id = :u"), {"u": user_id})
    ).first()
    return GateRow(*row) if row is not None else GateRow()


def _gates(row: GateRow, now: datetime) -> list[GateStatus]:
    out = [
        GateStatus(gate=Gate.RISK_WARNING, state="done")
        if row.risk_warning_acknowledged_at
        else GateStatus(
            gate=Gate.RISK_WARNING,
            state="needed",
            needed="read and acknowledge the risk warning: POST /api/v1/onboarding/risk-warning",
        )
    ]
    if row.cooling_off_completed_at:
        out.append(GateStatus(gate=Gate.COOLING_OFF, state="done"))
    elif row.cooling_off_started_at:
        out.append(
            GateStatus(
                gate=Gate.COOLING_OFF,
                state="waiting",
                needed="a 24-hour cooling-off period after your first request to invest",
                until=row.cooling_off_ends_at,
            )
        )
    else:
        out.append(
            GateStatus(
                gate=Gate.COOLING_OFF,
                state="needed",
                needed="starts when you acknowledge the risk warning, and lasts 24 hours",
            )
        )
    out.append(
        GateStatus(gate=Gate.CATEGORISATION, state="done")
        if row.category
        else GateStatus(
            gate=Gate.CATEGORISATION,
            state="needed",
            needed="say which kind of investor you are, with its declaration: "
            "POST /api/v1/onboarding/categorisation",
        )
    )
    if row.assessment_passed_at:
        out.append(GateStatus(gate=Gate.APPROPRIATENESS, state="done"))
    elif row.assessment_locked_until and row.assessment_locked_until > now:
        out.append(
            GateStatus(
                gate=Gate.APPROPRIATENESS,
                state="waiting",
                needed="the assessment can be taken again after 24 hours",
                until=row.assessment_locked_until,
            )
        )
    else:
        out.append(
            GateStatus(
                gate=Gate.APPROPRIATENESS,
                state="needed",
                needed="answer the appropriateness assessment: GET/POST /api/v1/onboarding/assessment",
            )
        )
    return out


async def gate_statuses(db: Db, user_id: uuid.UUID, *, now: datetime | None = None) -> list[GateStatus]:
    return _gates(await _row(db, user_id), now or datetime.now(UTC))


async def status(db: Db, user_id: uuid.UUID, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Each gate as a dict (gate, state "done"/"needed"/"waiting", needed, until): for `GET /kyc`."""
    return [g.model_dump(mode="json") for g in await gate_statuses(db, user_id, now=now)]


async def enforce(db: Db, user_id: uuid.UUID, *, now: datetime | None = None) -> None:
    """The order accept step's check: `FirstTradeGateClosed` naming the first gate not passed."""
    for gate in await gate_statuses(db, user_id, now=now):
        if gate.state != "done":
            when = f" (until {gate.until.isoformat()})" if gate.until else ""
            raise FirstTradeGateClosed(gate.gate, f"first-trade gate {gate.gate.value}: {gate.needed}{when}")


# --- writes ---------------------------------------------------------------------------------------


async def _ensure_row(conn: AsyncConnection, user_id: uuid.UUID) -> GateRow:
    """The customer's row, created if missing and locked for this transaction."""
    await conn.execute(
        text("INSERT INTO first_trade_gates (user_id) VALUES (:u) ON CONFLICT (user_id) DO NOTHING"),
        {"u": user_id},
    )
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM first_trade_gates WHERE user_id = :u FOR UPDATE"), {"u": user_id}
        )
    ).one()
    return GateRow(*row)


async def _audit(conn: AsyncConnection, user_id: uuid.UUID, action: str, details: dict[str, Any]) -> None:
    await audit_log.record(
        conn,
        action,
        actor_id=user_id,
        actor_type="user",
        target_type="user",
        target_id=user_id,
        details=details,
    )


async def risk_warning(db: Db, user_id: uuid.UUID) -> RiskWarning:
    """The personalised warning (the customer's first name, else a neutral address)."""
    name = (
        await db.execute(text("SELECT first_name FROM users WHERE id = :u"), {"u": user_id})
    ).scalar_one_or_none()
    row = await _row(db, user_id)
    return RiskWarning(
        version=RISK_WARNING_VERSION,
        text=RISK_WARNING.format(name=(name or "").strip() or "Please read this"),
        acknowledged_at=row.risk_warning_acknowledged_at,
    )


@dataclass(frozen=True)
class CoolingOff:
    """Where the cooling-off stands after an acknowledgement: the caller starts (or re-starts, when a
    previous start was lost) the saga whenever `completed` is False; its id makes a repeat harmless."""

    user_id: uuid.UUID
    started_at: datetime
    ends_at: datetime
    completed: bool

    def seconds_left(self, now: datetime) -> float:
        return max(0.0, (self.ends_at - now).total_seconds())


async def acknowledge_risk_warning(
    engine: AsyncEngine,
    user_id: uuid.UUID,
    version: str,
    *,
    cooling_off_seconds: float,
    now: datetime | None = None,
) -> CoolingOff:
    """Record the acknowledgement (once; a repeat changes nothing) and start the cooling-off clock."""
    now = now or datetime.now(UTC)
    if version != RISK_WARNING_VERSION:
        raise GateInputInvalid(
            f"that is not the current risk warning ({RISK_WARNING_VERSION}); read it again",
            field="body.version",
        )
    async with engine.begin() as conn:
        row = await _ensure_row(conn, user_id)
        if row.risk_warning_acknowledged_at is None:
            ends = now + timedelta(seconds=cooling_off_seconds)
            await conn.execute(
                text(
                    "UPDATE first_trade_gates SET risk_warning_version = :v, "
                    "risk_warning_acknowledged_at = :n, cooling_off_started_at = :n, "
                    "cooling_off_ends_at = :e, updated_at = now() WHERE user_id = :u"
                ),
                {"v": version, "n": now, "e": ends, "u": user_id},
            )
            await _audit(conn, user_id, "onboarding.risk_warning_acknowledged", {"version": version})
            return CoolingOff(user_id, now, ends, completed=False)
    assert row.cooling_off_started_at is not None and row.cooling_off_ends_at is not None
    return CoolingOff(
        user_id,
        row.cooling_off_started_at,
        row.cooling_off_ends_at,
        completed=row.cooling_off_completed_at is not None,
    )


async def complete_cooling_off(engine: AsyncEngine, user_id: uuid.UUID) -> bool:
    """The cooling-off saga's timer fired: open the gate (idempotent). False if there is nothing to end."""
    async with engine.begin() as conn:
        done = await conn.execute(
            text(
                "UPDATE first_trade_gates SET "
                "cooling_off_completed_at = coalesce(cooling_off_completed_at, now()), "
                "updated_at = now() WHERE user_id = :u AND cooling_off_started_at IS NOT NULL"
            ),
            {"u": user_id},
        )
        if done.rowcount:
            await _audit(conn, user_id, "onboarding.cooling_off_completed", {})
    return bool(done.rowcount)


async def categorise(
    engine: AsyncEngine, user_id: uuid.UUID, body: Categorisation, *, now: datetime | None = None
) -> datetime:
    """Record the customer's category and declaration (a later one replaces it; both are audited)."""
    now = now or datetime.now(UTC)
    declaration = check_declaration(body)
    async with engine.begin() as conn:
        await _ensure_row(conn, user_id)
        await conn.execute(
            text(
                "UPDATE first_trade_gates SET category = :c, declaration = CAST(:d AS jsonb), "
                "categorised_at = :n, "
                "updated_at = now() WHERE user_id = :u"
            ),
            {"c": body.category.value, "d": json.dumps(declaration), "n": now, "u": user_id},
        )
        await _audit(
            conn, user_id, "onboarding.categorised", {"category": body.category.value, **declaration}
        )
    return now


async def submit_assessment(
    engine: AsyncEngine,
    user_id: uuid.UUID,
    spec: QuestionnaireSpec,
    version: str,
    answers: dict[str, str],
    *,
    now: datetime | None = None,
) -> AssessmentResult:
    """Mark one attempt and record it. Passing needs the pass mark and every fundamental question;
    a failed attempt locks the next for `retry_after_hours` (24 h). A customer who passed stays passed."""
    now = now or datetime.now(UTC)
    if version != spec.version:
        raise GateInputInvalid(
            "those answers are to an older questionnaire; fetch it again", field="body.version"
        )
    async with engine.begin() as conn:
        row = await _ensure_row(conn, user_id)
        if row.category is None:
            raise FirstTradeGateClosed(
                Gate.CATEGORISATION, "say which kind of investor you are before the assessment"
            )
        if row.assessment_passed_at is not None:
            return AssessmentResult(passed=True)
        if row.assessment_locked_until is not None and row.assessment_locked_until > now:
            raise AppropriatenessLocked(row.assessment_locked_until, now)
        correct, missed_fundamental = score_answers(spec, answers)
        passed = correct >= spec.pass_mark and not missed_fundamental
        await conn.execute(
            text(
                "INSERT INTO appropriateness_attempts (id, user_id, questionnaire_version, answers, correct, "
                "total, missed_fundamental, passed, created_at) "
                "VALUES (:id, :u, :v, CAST(:a AS jsonb), :c, :t, :m, :p, :n)"
            ),
            {
                "id": uuid.uuid4(),
                "u": user_id,
                "v": spec.version,
                "a": json.dumps(answers),
                "c": correct,
                "t": len(spec.questions),
                "m": missed_fundamental,
                "p": passed,
                "n": now,
            },
        )
        retry_after = None if passed else now + timedelta(hours=spec.retry_after_hours)
        await conn.execute(
            text(
                "UPDATE first_trade_gates SET assessment_passed_at = :passed, "
                "assessment_locked_until = :lock, "
                "updated_at = now() WHERE user_id = :u"
            ),
            {"passed": now if passed else None, "lock": retry_after, "u": user_id},
        )
        await _audit(
            conn,
            user_id,
            "onboarding.assessment_" + ("passed" if passed else "failed"),
            {"version": spec.version, "correct": correct, "missed_fundamental": missed_fundamental},
        )
    return AssessmentResult(passed=passed, retry_after=retry_after)

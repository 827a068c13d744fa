"""Screening the payer name of a credited bank deposit.

A Faster Payment arrives with the name on the paying account. The money is credited first (a customer's
deposit is theirs whatever we later find); the payer's name is then screened like a customer's, and a
possible match raises a compliance review, never a block or a reversal: the review decides. Each deposit
leaves one `aml_checks` row (type PAYER_NAME, CLEAR or HIT), however often the saga retries the step.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.screening import CheckResult, Subject
from services import audit as audit_log
from services.screening.screener import find_matches
from services.screening.service import PROVIDER, ScreeningConfig

PAYER_CHECK = "PAYER_NAME"
REVIEW_ALERT = "compliance.review.payer_name"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PayerOutcome:
    result: CheckResult
    score: int
    recorded: bool  # False: this deposit's check was already recorded (a retry), or no payer name


async def screen_deposit_payer(
    engine: AsyncEngine,
    config: ScreeningConfig,
    *,
    deposit_id: uuid.UUID,
    user_id: uuid.UUID,
    payer_name: str,
) -> PayerOutcome:
    """Screen `payer_name`, record the check once per deposit, and on a possible match raise a review."""
    name = " ".join(payer_name.split())
    if not name:
        return PayerOutcome(CheckResult.CLEAR, 0, recorded=False)
    matches = (await find_matches(engine, [Subject(name=name)], config.bands, per_name=config.per_name))[0]
    result = CheckResult.HIT if matches else CheckResult.CLEAR
    score = max((m.score for m in matches), default=0)
    details = {
        "deposit_id": str(deposit_id),
        "payer_name": name,
        "action": "REVIEW" if matches else "CLEAR",  # never a freeze: the review decides
        "matches": [m.model_dump(mode="json") for m in matches],
    }
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"payer:{deposit_id}"})
        seen = (
            await conn.execute(
                text(
                    "SELECT 1 FROM aml_checks WHERE user_id = :u AND check_type = :t "
                    "AND details ->> 'deposit_id' = :d"
                ),
                {"u": user_id, "t": PAYER_CHECK, "d": str(deposit_id)},
            )
        ).first()
        if seen is not None:
            return PayerOutcome(result, score, recorded=False)
        check_id = uuid.uuid4()
        await conn.execute(
            text(
                "INSERT INTO aml_checks (id, user_id, check_type, provider, result, risk_score, details) "
                "VALUES (:id, :u, :t, :p, :r, :s, CAST(:d AS jsonb))"
            ),
            {
                "id": check_id,
                "u": user_id,
                "t": PAYER_CHECK,
                "p": PROVIDER,
                "r": result.value,
                "s": score,
                "d": json.dumps(details),
            },
        )
        if matches:
            log.warning(
                json.dumps({"alert": REVIEW_ALERT, "target": str(user_id), "aml_check_id": str(check_id)})
            )
            await audit_log.record(
                conn, REVIEW_ALERT, target_type="user", target_id=user_id,
                details={"aml_check_id": str(check_id), "deposit_id": str(deposit_id), "score": score},
            )  # fmt: skip
    return PayerOutcome(result, score, recorded=True)

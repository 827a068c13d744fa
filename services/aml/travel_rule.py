"""The UK Travel Rule on crypto withdrawals (MLR 2017 Part 7A, in force since 1 September 2023).

A crypto withdrawal worth £1,000 or more (GBP value at the current price, rounded up) must say who receives
it and where the wallet is: the customer's own self-hosted wallet, someone else's self-hosted wallet, or
an account at another crypto-asset provider (which one). We keep that with the withdrawal, screen the
beneficiary's name against the sanctions lists the way a deposit's payer name is screened, and raise an
AML alert (issue 16) when the money goes to a self-hosted wallet the customer does not own.

Screening bands (services/screening): a name in the freeze band refuses the request in neutral words (the
customer never learns why: no tipping off) with the finding recorded for compliance; a name in the review
band lets the request through but flags it, so an approver must look at it before anything is sent.
Below £1,000 the information is optional and, when given, handled the same way.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import AmlRuleVersion, AmlSubjectType, RuleHit, RuleVersionMode, RuleVersionStatus
from models.assets import CRYPTO
from models.payments_api import TravelRuleIn
from models.screening import Action, CheckResult, Subject
from services.aml.alerts import record_alerts
from services.payee import NameMatch, check_payee, customer_name
from services.screening.screener import find_matches
from services.screening.service import PROVIDER, ScreeningConfig

THRESHOLD_GBP = Decimal("1000")
CHECK_TYPE = "TRAVEL_RULE_BENEFICIARY"
REVIEW_ALERT = "compliance.review.travel_rule_beneficiary"
RULE_CODE = "travel_rule_unowned_self_hosted"
log = logging.getLogger(__name__)

WalletKind = Literal["self_hosted", "provider"]


@dataclass(frozen=True, slots=True)
class TravelRuleInfo:
    """What the customer told us about the destination."""

    beneficiary_name: str
    wallet: WalletKind
    provider_name: str | None = None


@dataclass(frozen=True, slots=True)
class TravelRuleFindings:
    """What the request-time checks made of it: the columns to store and what to do next."""

    info: TravelRuleInfo
    own_wallet: bool
    screening: Action

    @property
    def flag_for_approval(self) -> bool:
        """A possible sanctions match: an approver must look before anything is sent."""
        return self.screening is Action.REVIEW

    @property
    def unowned_self_hosted(self) -> bool:
        return self.info.wallet == "self_hosted" and not self.own_wallet

    def columns(self) -> dict[str, object]:
        return {
            "travel_rule_beneficiary": self.info.beneficiary_name,
            "travel_rule_wallet": self.info.wallet,
            "travel_rule_provider": self.info.provider_name,
            "travel_rule_own_wallet": self.own_wallet,
        }


def required(currency: str, notional_gbp: Decimal) -> bool:
    """Only crypto, from £1,000 (the GBP value the limit uses, which never rounds down)."""
    return currency in CRYPTO and notional_gbp >= THRESHOLD_GBP


def normalised(info: TravelRuleInfo) -> TravelRuleInfo:
    return TravelRuleInfo(
        beneficiary_name=" ".join(info.beneficiary_name.split()),
        wallet=info.wallet,
        provider_name=" ".join(info.provider_name.split()) if info.provider_name else None,
    )


async def assess(
    engine: AsyncEngine,
    conn: AsyncConnection,
    config: ScreeningConfig,
    *,
    info: TravelRuleInfo,
    user_id: uuid.UUID,
    withdrawal_id: uuid.UUID,
) -> TravelRuleFindings:
    """Match the beneficiary against the customer's name (ownership) and screen it.

    A hit is recorded in its own transaction (`engine`), so the finding survives a refusal that rolls the
    request's transaction (`conn`) back; a retried request records it once."""
    info = normalised(info)
    row = (
        await conn.execute(text("SELECT first_name, last_name FROM users WHERE id = :u"), {"u": user_id})
    ).first()
    name_on_file = customer_name(row[0], row[1]) if row else ""
    own = bool(name_on_file) and check_payee(info.beneficiary_name, name_on_file).result is NameMatch.MATCH
    matches = (
        await find_matches(
            engine, [Subject(name=info.beneficiary_name)], config.bands, per_name=config.per_name
        )
    )[0]
    score = max((m.score for m in matches), default=0)
    action = config.bands.action(score) if matches else Action.CLEAR
    if matches:
        await _record_hit(
            engine, user_id=user_id, withdrawal_id=withdrawal_id, info=info, score=score, action=action,
            matches=[m.model_dump(mode="json") for m in matches],
        )  # fmt: skip
    return TravelRuleFindings(info=info, own_wallet=own, screening=action)


async def _record_hit(
    engine: AsyncEngine,
    *,
    user_id: uuid.UUID,
    withdrawal_id: uuid.UUID,
    info: TravelRuleInfo,
    score: int,
    action: Action,
    matches: list[dict[str, object]],
) -> None:
    details = {
        "withdrawal_id": str(withdrawal_id),
        "beneficiary_name": info.beneficiary_name,
        "wallet": info.wallet,
        "provider_name": info.provider_name,
        "action": action.value,
        "matches": matches,
    }
    async with engine.begin() as conn:
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"travel-rule:{withdrawal_id}"}
        )
        seen = (
            await conn.execute(
                text(
                    "SELECT 1 FROM aml_checks WHERE user_id = :u AND check_type = :t "
                    "AND details ->> 'withdrawal_id' = :w"
                ),
                {"u": user_id, "t": CHECK_TYPE, "w": str(withdrawal_id)},
            )
        ).first()
        if seen is not None:
            return
        check_id = uuid.uuid4()
        await conn.execute(
            text(
                "INSERT INTO aml_checks (id, user_id, check_type, provider, result, risk_score, details) "
                "VALUES (:id, :u, :t, :p, :r, :s, CAST(:d AS jsonb))"
            ),
            {
                "id": check_id, "u": user_id, "t": CHECK_TYPE, "p": PROVIDER, "r": CheckResult.HIT.value,
                "s": score, "d": json.dumps(details),
            },
        )  # fmt: skip
        await conn.execute(
            text(
                "INSERT INTO audit_log (id, actor_type, action, target_type, target_id, details) "
                "VALUES (gen_random_uuid(), 'system', :a, 'withdrawal', :t, CAST(:d AS jsonb))"
            ),
            {
                "a": REVIEW_ALERT,
                "t": str(withdrawal_id),
                "d": json.dumps({"aml_check_id": str(check_id), "score": score, "action": action.value}),
            },
        )
    log.warning(
        json.dumps({"alert": REVIEW_ALERT, "target": str(withdrawal_id), "aml_check_id": str(check_id)})
    )


def travel_rule_info(given: TravelRuleIn | None) -> TravelRuleInfo | None:
    """The API's body part as the service's value."""
    if given is None:
        return None
    return TravelRuleInfo(
        beneficiary_name=given.beneficiary_name, wallet=given.wallet, provider_name=given.provider_name
    )


DEFAULT_SCORE = 25


async def flag_unowned_self_hosted(
    conn: AsyncConnection, *, user_id: uuid.UUID, withdrawal_id: uuid.UUID, now: datetime | None = None
) -> bool:
    """Raise the `travel_rule_unowned_self_hosted` alert on the withdrawal under the live rule set version
    (its score from the version's `travel_rule_unowned_self_hosted` rule when it has one), in the request's
    transaction: a refused request leaves no alert. False when no live version is published."""
    session = AsyncSession(bind=conn, expire_on_commit=False)
    version = (
        await session.exec(
            select(AmlRuleVersion)
            .where(
                col(AmlRuleVersion.status) == RuleVersionStatus.PUBLISHED.value,
                col(AmlRuleVersion.mode) == RuleVersionMode.LIVE.value,
            )
            .order_by(col(AmlRuleVersion.published_at))  # the live one decides (services/aml/versions.py)
            .limit(1)
        )
    ).first()
    if version is None:
        log.warning(json.dumps({"alert": "aml.no_live_rule_version", "withdrawal_id": str(withdrawal_id)}))
        return False
    rule = next((r for r in version.rules.get("rules", []) if r.get("code") == RULE_CODE), None) or {}
    hit = RuleHit(
        rule_code=RULE_CODE,
        score=int(rule.get("score", DEFAULT_SCORE)),
        details={"withdrawal_id": str(withdrawal_id), "wallet": "self_hosted", "owned_by_customer": False},
    )
    await record_alerts(
        session, user_id=user_id, subject_type=AmlSubjectType.WITHDRAWAL, subject_id=str(withdrawal_id),
        hits=[hit], rule_version=version, now=now,
    )  # fmt: skip
    await session.flush()
    return True

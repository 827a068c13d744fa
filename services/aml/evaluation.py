"""Rules applied to features: which rules fire, their summed score and what it means. Pure: no I/O, the
clock passed in, so the same history always gives the same answer (the backtest relies on it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from models.aml import AmlOutcome, AmlSubjectType, RuleHit
from services.aml.features import Features
from services.aml.rules import (
    DepositThenWithdrawalParams,
    HighRiskCountryParams,
    LargeTransactionParams,
    ManySourcesParams,
    RapidTradingParams,
    Rule,
    RuleKind,
    RuleSet,
    ValueInWindowParams,
)
from services.aml.scoring import outcome_for


@dataclass
class Evaluation:
    hits: list[RuleHit] = field(default_factory=list)
    score: int = 0
    outcome: AmlOutcome = AmlOutcome.APPROVE


def _deposit_then_withdrawal(p: Any, f: Features, at: datetime) -> dict[str, Any] | None:
    assert isinstance(p, DepositThenWithdrawalParams)
    if f.last_deposit_at is None or at - f.last_deposit_at > timedelta(minutes=p.window_minutes):
        return None
    return {"deposit_at": f.last_deposit_at.isoformat(), "window_minutes": p.window_minutes}


def _rapid_trading(p: Any, f: Features, at: datetime) -> dict[str, Any] | None:
    assert isinstance(p, RapidTradingParams)
    if f.round_trips < p.min_round_trips:
        return None
    return {"round_trips": f.round_trips, "window_minutes": p.window_minutes}


def _many_sources(p: Any, f: Features, at: datetime) -> dict[str, Any] | None:
    assert isinstance(p, ManySourcesParams)
    if f.distinct_sources < p.min_sources:
        return None
    return {"distinct_sources": f.distinct_sources, "window_hours": p.window_hours}


def _high_risk_country(p: Any, f: Features, at: datetime) -> dict[str, Any] | None:
    assert isinstance(p, HighRiskCountryParams)
    listed = set(p.countries)
    found: dict[str, Any] = {}
    if "nationality" in p.check and f.nationality and f.nationality.upper() in listed:
        found["nationality"] = f.nationality.upper()
    if "residence" in p.check and f.residence and f.residence.upper() in listed:
        found["residence"] = f.residence.upper()
    payers = sorted({c for c in f.payer_countries if c in listed}) if "payer_bank" in p.check else []
    if payers:
        found["payer_bank_countries"] = payers
    return found or None


def _value_in_window(p: Any, f: Features, at: datetime) -> dict[str, Any] | None:
    assert isinstance(p, ValueInWindowParams)
    if f.value_gbp <= p.threshold_gbp:
        return None
    return {
        "value_gbp": str(f.value_gbp),
        "window_hours": p.window_hours,
        "threshold_gbp": str(p.threshold_gbp),
    }


def _large_transaction(p: Any, f: Features, at: datetime) -> dict[str, Any] | None:
    assert isinstance(p, LargeTransactionParams)
    if f.subject_gbp is None or f.subject_gbp < p.threshold_gbp:
        return None
    return {"amount_gbp": str(f.subject_gbp), "threshold_gbp": str(p.threshold_gbp)}


CHECKS: dict[RuleKind, Callable[[Any, Features, datetime], dict[str, Any] | None]] = {
    RuleKind.DEPOSIT_THEN_WITHDRAWAL: _deposit_then_withdrawal,
    RuleKind.RAPID_TRADING: _rapid_trading,
    RuleKind.MANY_SOURCES: _many_sources,
    RuleKind.HIGH_RISK_COUNTRY: _high_risk_country,
    RuleKind.VALUE_IN_WINDOW: _value_in_window,
    RuleKind.LARGE_TRANSACTION: _large_transaction,
}


def rules_for(rules: RuleSet, subject_type: AmlSubjectType) -> list[Rule]:
    """The enabled rules that look at this kind of subject."""
    return [r for r in rules.rules if r.enabled and subject_type in r.applies_to]


def evaluate(rules: RuleSet, features: Features, subject_type: AmlSubjectType, at: datetime) -> Evaluation:
    """The hits of the rules for `subject_type`, their summed score and the outcome it reaches."""
    hits = []
    for rule in rules_for(rules, subject_type):
        evidence = CHECKS[rule.kind](rule.params, features, at)
        if evidence is not None:
            hits.append(
                RuleHit(rule_code=rule.code, score=rule.score, details={"kind": rule.kind, **evidence})
            )
    score = sum(h.score for h in hits)
    return Evaluation(
        hits=hits, score=score, outcome=outcome_for(score, {"thresholds": rules.thresholds.model_dump()})
    )

"""The rule set as data: typed rule kinds with parameters, validated before a version is stored.

Why typed kinds and not an expression library (cel-python, rule-engine): every rule the seed asks for
is a threshold on an aggregate over the customer's history (a count, a sum, a latest time, a set of
countries), and the aggregates are the expensive and subtle part; they are computed for all rules in one
SQL query (services/aml/features.py). A kind names the aggregate and its window, so a version is checked
in full when it is loaded (unknown kinds, bad windows and amounts are refused before anything runs), a
compliance officer reads it as parameters rather than code, and the sweep can compute the same features
set-based for every customer at once. An expression language would add a dependency and a second way to
be wrong (expressions over features we would still have to compute and name), for flexibility nobody
has asked for. A new kind is a class here and a column in the features query.

At most one enabled rule per kind: the features query computes each kind's aggregate over that rule's
window.
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.aml import AmlSubjectType, RuleVersionMode

SEED_DIR = Path(__file__).resolve().parents[2] / "config" / "aml"


class RuleKind(StrEnum):
    DEPOSIT_THEN_WITHDRAWAL = "deposit_then_withdrawal"
    RAPID_TRADING = "rapid_trading"
    MANY_SOURCES = "many_sources"
    HIGH_RISK_COUNTRY = "high_risk_country"
    VALUE_IN_WINDOW = "value_in_window"
    LARGE_TRANSACTION = "large_transaction"


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DepositThenWithdrawalParams(_Params):
    """A withdrawal within `window_minutes` after a credited deposit (money passing straight through)."""

    window_minutes: int = Field(gt=0, le=7 * 24 * 60)


class RapidTradingParams(_Params):
    """At least `min_round_trips` buy/sell pairs in one symbol within `window_minutes`."""

    window_minutes: int = Field(gt=0, le=7 * 24 * 60)
    min_round_trips: int = Field(gt=0)


class ManySourcesParams(_Params):
    """Deposits from at least `min_sources` distinct payer accounts or addresses within `window_hours`."""

    window_hours: int = Field(gt=0, le=90 * 24)
    min_sources: int = Field(gt=1)


class HighRiskCountryParams(_Params):
    """The customer's nationality or residence, or a payer's bank country in `window_days`, is listed."""

    window_days: int = Field(default=90, gt=0, le=3650)
    check: list[str] = Field(default_factory=lambda: ["nationality", "residence", "payer_bank"])
    countries: list[str] = Field(min_length=1)

    @field_validator("countries")
    @classmethod
    def _alpha2(cls, v: list[str]) -> list[str]:
        codes = [c.strip().upper() for c in v]
        if any(len(c) != 2 or not c.isalpha() for c in codes):
            raise ValueError("countries are ISO 3166-1 alpha-2 codes")
        return sorted(set(codes))

    @field_validator("check")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = set(v) - {"nationality", "residence", "payer_bank"}
        if unknown or not v:
            raise ValueError(f"check is some of nationality, residence, payer_bank (not {sorted(unknown)})")
        return v


class ValueInWindowParams(_Params):
    """More than `threshold_gbp` moved in (deposits) and out (withdrawals, trades) within `window_hours`."""

    window_hours: int = Field(gt=0, le=90 * 24)
    threshold_gbp: Decimal = Field(gt=0)


class LargeTransactionParams(_Params):
    """One transaction worth at least `threshold_gbp`."""

    threshold_gbp: Decimal = Field(gt=0)


PARAMS: dict[RuleKind, type[_Params]] = {
    RuleKind.DEPOSIT_THEN_WITHDRAWAL: DepositThenWithdrawalParams,
    RuleKind.RAPID_TRADING: RapidTradingParams,
    RuleKind.MANY_SOURCES: ManySourcesParams,
    RuleKind.HIGH_RISK_COUNTRY: HighRiskCountryParams,
    RuleKind.VALUE_IN_WINDOW: ValueInWindowParams,
    RuleKind.LARGE_TRANSACTION: LargeTransactionParams,
}


class Rule(BaseModel):
    """One rule: a kind, its parameters, the score it adds when it fires, and the subjects it looks at."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    kind: RuleKind
    enabled: bool = True
    score: int = Field(ge=0, le=1000)
    applies_to: list[AmlSubjectType] = Field(min_length=1)
    params: Any = None

    @model_validator(mode="after")
    def _typed_params(self) -> Rule:
        raw = self.params if self.params is not None else {}
        if isinstance(raw, BaseModel):
            raw = raw.model_dump()
        self.params = PARAMS[self.kind].model_validate(raw)
        return self


class Thresholds(BaseModel):
    """The least summed score for each outcome above approve."""

    model_config = ConfigDict(extra="forbid")

    review: int = Field(gt=0)
    block_and_review: int = Field(gt=0)
    decline: int = Field(gt=0)

    @model_validator(mode="after")
    def _escalating(self) -> Thresholds:
        if not self.review <= self.block_and_review <= self.decline:
            raise ValueError("thresholds escalate: review <= block_and_review <= decline")
        return self


class RuleSet(BaseModel):
    """A whole version: what `aml_rule_versions.rules` holds (plus its label and mode on the row)."""

    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64)
    mode: RuleVersionMode = RuleVersionMode.LIVE
    description: str = ""
    thresholds: Thresholds
    rules: list[Rule]

    @model_validator(mode="after")
    def _one_rule_per_code_and_kind(self) -> RuleSet:
        codes = [r.code for r in self.rules]
        if len(codes) != len(set(codes)):
            raise ValueError("rule codes are unique within a version")
        kinds = [r.kind for r in self.rules if r.enabled]
        if len(kinds) != len(set(kinds)):
            raise ValueError("at most one enabled rule per kind")
        return self

    def enabled(self, kind: RuleKind) -> Rule | None:
        return next((r for r in self.rules if r.enabled and r.kind == kind), None)

    def stored(self) -> dict[str, Any]:
        """The JSON stored in `aml_rule_versions.rules` (amounts as strings)."""
        return self.model_dump(mode="json", exclude={"version", "mode"})

    @classmethod
    def from_row(cls, version: str, mode: str, rules: dict[str, Any]) -> RuleSet:
        return cls.model_validate({**rules, "version": version, "mode": mode})


def load_file(path: Path) -> RuleSet:
    """A rule set from a JSON file (config/aml/*.json), validated."""
    return RuleSet.model_validate(json.loads(path.read_text()))


def seed_files() -> list[Path]:
    return sorted(SEED_DIR.glob("*.json"))

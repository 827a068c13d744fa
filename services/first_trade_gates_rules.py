"""What the first-trade gates ask (services/first_trade_gates.py): the appropriateness questionnaire,
read from its data file, and the declaration each client category needs (COBS 4.12A).

Pure functions and the file's model; no database. A bad questionnaire file fails when it is read (at
the first request, and in tests), never in front of a customer half-way through.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, model_validator

from models.first_trade_gates import Categorisation, ClientCategory, Question, Questionnaire, QuestionOption
from services.errors import DomainError


class GateInputInvalid(DomainError):
    """The answer or declaration is not acceptable as sent; `field` names what to correct."""

    default_code = "invalid_gate_input"
    status = 422


# --- the questionnaire, as data ------------------------------------------------------------------


class _Option(BaseModel):
    id: str
    text: str


class _Question(BaseModel):
    id: str
    text: str
    options: list[_Option]
    correct: str
    fundamental: bool = False


class QuestionnaireSpec(BaseModel):
    """The assessment file: checked when read, so a bad edit fails at start-up, not at a customer."""

    version: str
    pass_mark: int
    retry_after_hours: float = 24
    questions: list[_Question]

    @model_validator(mode="after")
    def _consistent(self) -> QuestionnaireSpec:
        ids = [q.id for q in self.questions]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique")
        for q in self.questions:
            if q.correct not in {o.id for o in q.options}:
                raise ValueError(f"question {q.id}: the right answer is not one of its options")
        if not 0 < self.pass_mark <= len(self.questions):
            raise ValueError("the pass mark must be between 1 and the number of questions")
        if self.retry_after_hours < 24:
            raise ValueError("a failed assessment waits at least 24 hours (PS23/6)")
        return self

    def public(self) -> Questionnaire:
        """What the customer is shown: questions and options, never the right answers."""
        return Questionnaire(
            version=self.version,
            questions=[
                Question(
                    id=q.id, text=q.text, options=[QuestionOption(id=o.id, text=o.text) for o in q.options]
                )
                for q in self.questions
            ],
        )


@lru_cache(maxsize=4)
def load_questionnaire(path: str) -> QuestionnaireSpec:
    return QuestionnaireSpec.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))


# --- declarations per category (COBS 4.12A) -------------------------------------------------------

HNW_INCOME = Decimal("100000")
HNW_NET_ASSETS = Decimal("250000")
RESTRICTED_SHARE = Decimal("10")
SOPHISTICATED_CRITERIA = (
    "business_angel_network_member",  # for at least the last six months
    "more_than_one_unlisted_investment",  # in the last two years
    "private_equity_professional",  # in the last two years
    "director_of_large_company",  # turnover of at least £1m, in the last two years
)
DECLARATIONS: dict[ClientCategory, str] = {
    ClientCategory.RESTRICTED: (
        "In the past twelve months I have not invested more than 10% of my net assets in high-risk "
        "investments, and in the next twelve months I will not."
    ),
    ClientCategory.HIGH_NET_WORTH: (
        "In the last financial year I had an annual income of £100,000 or more, or net assets of "
        "£250,000 or more (not counting my home, pension or insurance)."
    ),
    ClientCategory.SOPHISTICATED: (
        "I am a self-certified sophisticated investor: at least one of the listed statements is true."
    ),
}


def _decimal(declaration: dict[str, Any], name: str) -> Decimal | None:
    value = declaration.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise GateInputInvalid(f"{name} is an amount given as a string", field=f"body.declaration.{name}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise GateInputInvalid(f"{name} is not a number", field=f"body.declaration.{name}") from None
    if not amount.is_finite() or amount < 0:
        raise GateInputInvalid(f"{name} must be zero or more", field=f"body.declaration.{name}")
    return amount


def _flag(declaration: dict[str, Any], name: str) -> bool:
    value = declaration.get(name, False)
    if not isinstance(value, bool):
        raise GateInputInvalid(f"{name} is true or false", field=f"body.declaration.{name}")
    return value


def check_declaration(body: Categorisation) -> dict[str, Any]:
    """The declaration as stored, or `GateInputInvalid` naming the field that does not qualify."""
    d = body.declaration
    if not _flag(d, "accepted"):
        raise GateInputInvalid(
            "the declaration must be read and accepted (accepted: true)", field="body.declaration.accepted"
        )
    kept: dict[str, Any] = {"statement": DECLARATIONS[body.category], "accepted": True}
    if body.category is ClientCategory.RESTRICTED:
        share = _decimal(d, "high_risk_share_last_12_months_percent")
        if share is None or share > RESTRICTED_SHARE:
            raise GateInputInvalid(
                "a restricted investor has put at most 10% of net assets in high-risk investments "
                "in the last twelve months",
                field="body.declaration.high_risk_share_last_12_months_percent",
            )
        if not _flag(d, "will_limit_to_10_percent_next_12_months"):
            raise GateInputInvalid(
                "a restricted investor limits high-risk investments to 10% of net assets for the next "
                "twelve months",
                field="body.declaration.will_limit_to_10_percent_next_12_months",
            )
        kept |= {
            "high_risk_share_last_12_months_percent": str(share),
            "will_limit_to_10_percent_next_12_months": True,
        }
    elif body.category is ClientCategory.HIGH_NET_WORTH:
        income = _decimal(d, "annual_income_gbp")
        assets = _decimal(d, "net_assets_gbp")
        if (income is None or income < HNW_INCOME) and (assets is None or assets < HNW_NET_ASSETS):
            raise GateInputInvalid(
                "a high-net-worth investor has an annual income of £100,000 or net assets of £250,000",
                field="body.declaration.annual_income_gbp",
            )
        kept |= {"annual_income_gbp": None if income is None else str(income)}
        kept |= {"net_assets_gbp": None if assets is None else str(assets)}
    else:
        met = [c for c in SOPHISTICATED_CRITERIA if _flag(d, c)]
        if not met:
            raise GateInputInvalid(
                "a self-certified sophisticated investor meets at least one of: "
                + ", ".join(SOPHISTICATED_CRITERIA),
                field=f"body.declaration.{SOPHISTICATED_CRITERIA[0]}",
            )
        kept |= {"criteria_met": met}
    return kept


def score_answers(spec: QuestionnaireSpec, answers: dict[str, str]) -> tuple[int, bool]:
    """(right answers, whether a fundamental question was missed), or `GateInputInvalid` naming the
    question that is unanswered, unknown or answered with something not among its options."""
    unknown = sorted(set(answers) - {q.id for q in spec.questions})
    if unknown:
        raise GateInputInvalid(f"no such question: {unknown[0]}", field=f"body.answers.{unknown[0]}")
    correct, missed_fundamental = 0, False
    for q in spec.questions:
        given = answers.get(q.id)
        if given is None:
            raise GateInputInvalid(f"question {q.id} is not answered", field=f"body.answers.{q.id}")
        if given not in {o.id for o in q.options}:
            raise GateInputInvalid(
                f"{given!r} is not an option of question {q.id}", field=f"body.answers.{q.id}"
            )
        if given == q.correct:
            correct += 1
        elif q.fundamental:
            missed_fundamental = True
    return correct, missed_fundamental

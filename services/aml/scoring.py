"""From a summed score to an outcome, by the thresholds a rule set version carries.

`thresholds` maps each outcome above approve to the least score that reaches it, e.g.
`{"review": 20, "block_and_review": 50, "decline": 100}`; the highest outcome reached wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from models.aml import AmlOutcome

_ESCALATION = (AmlOutcome.DECLINE, AmlOutcome.BLOCK_AND_REVIEW, AmlOutcome.REVIEW)


def outcome_for(score: int, rule_set: Mapping[str, Any]) -> AmlOutcome:
    """The outcome `score` reaches under `rule_set["thresholds"]` (approve when it reaches none)."""
    thresholds: Mapping[str, Any] = rule_set.get("thresholds") or {}
    for outcome in _ESCALATION:
        least = thresholds.get(outcome.value)
        if least is not None and score >= int(least):
            return outcome
    return AmlOutcome.APPROVE

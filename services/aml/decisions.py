"""Compliance's decision on a withdrawal that AML monitoring holds for review, checked before it counts.

Anyone who can reach Temporal can send `compliance_decision`, so the signal counts only with a decision
token (services/decision_tokens.py) for `aml_clear` / `aml_decline` on exactly this withdrawal, issued to
an active user with the compliance role. Every attempt, counted or refused, is audited.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import jwt
from sqlalchemy.ext.asyncio import AsyncConnection

from services.alerts import audit
from services.decision_tokens import DecisionTokens, ProofInvalid
from services.payments import staff_problem

DECISION_ACTIONS = {"clear": "aml_clear", "decline": "aml_decline"}


def _claimed_actor(token: str) -> uuid.UUID | None:
    """Who the token says it was issued to (unverified: `DecisionTokens.verify` then checks everything)."""
    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
        return uuid.UUID(str(sub))
    except (jwt.PyJWTError, ValueError, TypeError):
        return None


async def check_compliance_decision(
    conn: AsyncConnection,
    tokens: DecisionTokens,
    *,
    withdrawal_id: uuid.UUID,
    decision: str,
    token: str,
    staff_id: uuid.UUID | None,
    case_id: uuid.UUID | None,
    now: datetime,
) -> str | None:
    """None if the decision is proven (and audited as made), else why not (audited as refused)."""
    action = DECISION_ACTIONS.get(decision)
    actor = staff_id or _claimed_actor(token)
    problem: str | None = None
    if action is None:
        problem = f"unknown decision {decision!r}: clear or decline"
    elif actor is None:
        problem = "no proof: a bare decision is not a decision"
    else:
        try:
            tokens.verify(token, actor_id=actor, action=action, now=now, withdrawal_id=withdrawal_id)
        except ProofInvalid as e:
            problem = str(e)
    if problem is None:
        problem = await staff_problem(conn, actor, role="compliance")
    await audit(
        conn,
        f"withdrawal.compliance_{decision}" + ("" if problem is None else ".refused"),
        actor_id=actor if problem is None else None,
        actor_type="staff",
        target_type="withdrawal",
        target_id=str(withdrawal_id),
        claimed_actor=str(actor) if actor else None,
        case_id=str(case_id) if case_id else None,
        refusal=problem,
    )
    return problem

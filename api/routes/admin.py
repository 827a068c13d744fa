"""Staff endpoints: the withdrawal approval queue (approver role), the NEEDS_ATTENTION queue and its
resolution, currency halts and float top-ups (ops).

Every decision on a withdrawal needs `X-TOTP-Code` (`ApproverWithTotp` / `OpsWithTotp`): after the check,
the API signs a short-lived decision token for this staff user, withdrawal and action
(`services.decision_tokens`) and sends it with the decision. Approve/reject/resolve go to the withdrawal
saga as updates, so the answer says whether the decision counted; the saga verifies the token and
re-checks the role in the users table itself, exactly as for a decision signalled from the Temporal CLI
or Web UI (whose token comes from `POST /admin/withdrawals/{id}/decision-token` or
`python -m cli approval-token`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends

from api.auth_deps import ApproverWithTotp, OpsWithTotp, problem_responses, require_role
from api.deps import EngineDep, SettingsDep
from api.sagas import PaymentSagasDep
from models.payments import Decision, DecisionOutcome, Resolution
from models.payments_api import (
    DecisionBody,
    HaltBody,
    HaltOut,
    PendingWithdrawal,
    ResolveBody,
    TokenBody,
    TokenOut,
    TopUpOut,
)
from models.users import User
from services import payments
from services.decision_tokens import DecisionTokens

router = APIRouter(prefix="/admin", tags=["admin"])

Approver = Annotated[User, Depends(require_role("approver"))]
Ops = Annotated[User, Depends(require_role("ops"))]


def sign_decision(
    settings: SettingsDep, staff: User, withdrawal_id: uuid.UUID, action: str, detail: str = ""
) -> str:
    """A short-lived decision token for `staff` (after their TOTP check), which the saga verifies."""
    tokens = DecisionTokens.from_secret(
        settings.jwt_secret, timedelta(seconds=settings.decision_token_ttl_seconds)
    )
    return tokens.issue(
        actor_id=staff.id, withdrawal_id=withdrawal_id, action=action, now=datetime.now(UTC), detail=detail
    )


async def decide_withdrawal(
    sagas: PaymentSagasDep,
    settings: SettingsDep,
    staff: User,
    withdrawal_id: uuid.UUID,
    kind: str,
    reason: str,
) -> DecisionOutcome:
    """Send an approve/reject decision to the withdrawal saga (as an update: the answer says whether it
    counted). Also used by the staff console (api/console/routes/withdrawals.py)."""
    decision = Decision(
        approver_id=staff.id, reason=reason, token=sign_decision(settings, staff, withdrawal_id, kind)
    )
    return await sagas.decide(withdrawal_id, f"{kind}_withdrawal", decision)


@router.get(
    "/withdrawals/pending", response_model=list[PendingWithdrawal], responses=problem_responses(401, 403)
)
async def approval_queue(staff: Approver, engine: EngineDep) -> list[PendingWithdrawal]:
    """Withdrawals waiting for approval, oldest first."""
    return await payments.approval_queue(engine)


@router.post(
    "/withdrawals/{withdrawal_id}/approve",
    response_model=DecisionOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def approve(
    withdrawal_id: uuid.UUID, body: DecisionBody, staff: ApproverWithTotp, sagas: PaymentSagasDep,
    settings: SettingsDep,
) -> DecisionOutcome:  # fmt: skip
    """Approve a withdrawal (needs `X-TOTP-Code`; four eyes: never your own; above £50k two approvers)."""
    return await decide_withdrawal(sagas, settings, staff, withdrawal_id, "approve", body.reason)


@router.post(
    "/withdrawals/{withdrawal_id}/reject",
    response_model=DecisionOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def reject(
    withdrawal_id: uuid.UUID, body: DecisionBody, staff: ApproverWithTotp, sagas: PaymentSagasDep,
    settings: SettingsDep,
) -> DecisionOutcome:  # fmt: skip
    """Reject a withdrawal (needs `X-TOTP-Code`); the funds go back to the customer."""
    return await decide_withdrawal(sagas, settings, staff, withdrawal_id, "reject", body.reason)


@router.post(
    "/withdrawals/{withdrawal_id}/decision-token",
    response_model=TokenOut,
    responses=problem_responses(401, 403, 422),
)
async def decision_token(
    withdrawal_id: uuid.UUID, body: TokenBody, staff: ApproverWithTotp, settings: SettingsDep
) -> TokenOut:
    """A short-lived token proving your decision, for the Temporal Web UI/CLI signal (needs `X-TOTP-Code`)."""
    return TokenOut(
        token=sign_decision(settings, staff, withdrawal_id, body.action),
        approver_id=staff.id,
        expires_in=settings.decision_token_ttl_seconds,
    )


@router.get(
    "/withdrawals/attention", response_model=list[PendingWithdrawal], responses=problem_responses(401, 403)
)
async def attention_queue(staff: Ops, engine: EngineDep) -> list[PendingWithdrawal]:
    """Withdrawals in NEEDS_ATTENTION (outcome unknown or books incomplete; funds held), oldest first."""
    return await payments.attention_queue(engine)


@router.post(
    "/withdrawals/{withdrawal_id}/resolve",
    response_model=DecisionOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def resolve(
    withdrawal_id: uuid.UUID, body: ResolveBody, staff: OpsWithTotp, sagas: PaymentSagasDep,
    settings: SettingsDep,
) -> DecisionOutcome:  # fmt: skip
    """Resolve a withdrawal in NEEDS_ATTENTION after checking the bank/venue (needs `X-TOTP-Code`)."""
    action = "resolve_paid" if body.paid else "resolve_not_paid"
    resolution = Resolution(
        staff_id=staff.id, paid=body.paid, reason=body.reason, provider_ref=body.provider_ref,
        token=sign_decision(settings, staff, withdrawal_id, action, body.reason),
    )  # fmt: skip
    return await sagas.decide(withdrawal_id, "resolve", resolution)


@router.get("/halts", response_model=list[HaltOut], responses=problem_responses(401, 403))
async def list_halts(staff: Ops, engine: EngineDep) -> list[HaltOut]:
    """Currencies whose withdrawals are halted."""
    return await payments.list_halts(engine)


@router.put("/halts/{currency}", status_code=204, responses=problem_responses(401, 403, 404))
async def halt(currency: str, body: HaltBody, staff: Ops, engine: EngineDep) -> None:
    """Halt withdrawals of a currency: new and approved ones wait (funds held) until lifted."""
    await payments.halt_by_staff(engine, currency=currency, reason=body.reason, staff_id=staff.id)


@router.delete("/halts/{currency}", status_code=204, responses=problem_responses(401, 403, 404, 409))
async def unhalt(currency: str, staff: Ops, engine: EngineDep) -> None:
    """Lift a halt; waiting withdrawals carry on at their next check. A halt set by reconciliation is
    lifted only by two staff (`POST /admin/reconciliation/halts/{currency}/acknowledge`)."""
    await payments.lift_by_staff(engine, currency=currency, staff_id=staff.id)


@router.get("/float-topups", response_model=list[TopUpOut], responses=problem_responses(401, 403))
async def float_topups(staff: Ops, engine: EngineDep) -> list[TopUpOut]:
    """Top-up requests of the provider omnibus balances (hot-wallet float), newest first."""
    return await payments.list_top_ups(engine)

"""Staff endpoints of treasury (issue 20 item 8): float transfers between venues, asked for by ops and
approved by two different staff above the limit (each with `X-TOTP-Code`; the saga checks a signed
decision token, not a bare id), and ops' word on a transfer waiting in NEEDS_ATTENTION (the same proof;
two staff giving the same word above the limit)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from temporalio.service import RPCError

from api.auth_deps import OpsWithTotp, problem_responses, require_role
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.errors import ProblemError
from api.sagas import saga_answers
from models.api import DecimalStr
from models.assets import CRYPTO, SCALES
from models.treasury import (
    FloatTransferInput,
    ResolutionOutcomeKind,
    TransferApproval,
    TransferResolution,
    TransferResolutionOutcome,
    TransferStatus,
)
from models.users import User
from services import treasury
from services.decision_tokens import DecisionTokens
from temporal import task_queues

router = APIRouter(prefix="/admin/float-transfers", tags=["admin"])
Ops = Annotated[User, Depends(require_role("ops"))]


class TransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(max_length=10)
    from_venue: str = Field(max_length=32)
    to_venue: str = Field(max_length=32)
    amount: DecimalStr
    reason: str = Field(min_length=1, max_length=500)


class TransferRow(BaseModel):
    transfer_id: uuid.UUID
    currency: str
    from_venue: str
    to_venue: str
    amount: str
    fee: str | None
    status: str
    approvals_required: int
    trigger: str
    tx_hash: str | None
    attention: str | None
    created_at: datetime | None


def _row(r: dict[str, Any]) -> TransferRow:
    scale = SCALES.get(r["currency"], 8)
    return TransferRow(
        transfer_id=r["id"], currency=r["currency"], from_venue=r["from_venue"], to_venue=r["to_venue"],
        amount=f"{r['amount']:.{scale}f}", fee=None if r["fee"] is None else f"{r['fee']:.{scale}f}",
        status=r["status"], approvals_required=r["approvals_required"], trigger=r["trigger"],
        tx_hash=r["tx_hash"], attention=r["attention"], created_at=r["created_at"],
    )  # fmt: skip


@router.get("", response_model=list[TransferRow], responses=problem_responses(401, 403))
async def list_transfers(staff: Ops, engine: EngineDep) -> list[TransferRow]:
    """Float transfers, newest first (NEEDS_ATTENTION ones say why)."""
    return [_row(r) for r in await treasury.listing(engine)]


@router.post(
    "",
    status_code=202,
    response_model=TransferRow,
    responses=problem_responses(401, 403, 409, 422, 503),
)
async def request_transfer(
    body: TransferCreate, staff: OpsWithTotp, engine: EngineDep, settings: SettingsDep, client: TemporalDep
) -> TransferRow:
    """Move float from one venue to another (needs `X-TOTP-Code`); above the limit two other staff approve."""
    from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id

    if body.currency not in CRYPTO:
        raise ProblemError(422, "invalid_currency", f"float transfers move crypto: {sorted(CRYPTO)}")
    venues = set(treasury.CRYPTO_VENUES)
    if body.from_venue not in venues or body.to_venue not in venues or body.from_venue == body.to_venue:
        raise ProblemError(422, "invalid_venues", f"two different venues of {sorted(venues)}")
    amount = Decimal(body.amount)
    if amount <= 0 or amount != amount.quantize(Decimal(1).scaleb(-SCALES[body.currency])):
        raise ProblemError(422, "invalid_amount", f"a positive amount at {SCALES[body.currency]} decimals")
    if await treasury.open_transfer(engine, body.currency) is not None:
        raise ProblemError(409, "transfer_open", f"a {body.currency} float transfer is already under way")
    transfer_id = uuid.uuid4()
    data = FloatTransferInput(
        transfer_id=transfer_id, currency=body.currency, from_venue=body.from_venue, to_venue=body.to_venue,
        amount=amount, trigger=f"staff:{staff.id}", requested_by=staff.id, reason=body.reason,
        approvals_required=treasury.approvals_required(
            body.currency, amount, settings.float_transfer_approval_limits
        ),
        approval_timeout_seconds=settings.float_transfer_approval_timeout_seconds,
        credit_poll_seconds=settings.float_transfer_poll_seconds,
        lookup_poll_seconds=settings.float_transfer_poll_seconds,
    )  # fmt: skip
    # Recorded before the saga starts, so the answer (and the list) shows it at once; the saga's own
    # record step finds the row (keyed by id) and goes on.
    status = await treasury.record(engine, data)
    try:
        await client.start_workflow(
            FloatTransferWorkflow.run,
            data,
            id=float_transfer_workflow_id(transfer_id),
            task_queue=task_queues.OPS,
        )
    except RPCError as e:
        # Nothing was sent: close the row so it does not hold the currency's one open transfer.
        await treasury.set_status(
            engine, transfer_id, TransferStatus.REJECTED, attention="the saga could not be started"
        )
        raise ProblemError(503, "unavailable", "the transfer could not be started; try again") from e
    row = await treasury.get(engine, transfer_id)
    assert row is not None and row["status"] == status
    return _row(row)


class Approved(BaseModel):
    transfer_id: uuid.UUID
    accepted: bool


@router.post(
    "/{transfer_id}/approve",
    status_code=202,
    response_model=Approved,
    responses=problem_responses(401, 403, 404, 409),
)
async def approve(
    transfer_id: uuid.UUID, staff: OpsWithTotp, engine: EngineDep, settings: SettingsDep, client: TemporalDep
) -> Approved:
    """Approve a transfer over the limit (needs `X-TOTP-Code`); the second different approver releases it."""
    from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id

    row = await treasury.get(engine, transfer_id)
    if row is None:
        raise ProblemError(404, "not_found", "no such float transfer")
    if row["status"] != TransferStatus.AWAITING_APPROVAL.value:
        raise ProblemError(409, "not_awaiting_approval", "this transfer is not waiting for approval")
    if row["requested_by"] == staff.id:
        raise ProblemError(409, "same_person", "the staff member who requested it cannot approve it")
    from activities.treasury import APPROVE_DETAIL

    token = DecisionTokens.from_secret(settings.jwt_secret).issue(
        actor_id=staff.id, withdrawal_id=transfer_id, action="approve", now=datetime.now(UTC),
        detail=APPROVE_DETAIL,
    )  # fmt: skip
    gone = ProblemError(409, "not_awaiting_approval", "this transfer is no longer waiting")
    with saga_answers(gone=gone):
        await client.get_workflow_handle(float_transfer_workflow_id(transfer_id)).signal(
            FloatTransferWorkflow.approve, TransferApproval(staff_id=staff.id, token=token)
        )
    return Approved(transfer_id=transfer_id, accepted=True)


class ResolveBody(BaseModel):
    """What ops established about a transfer in NEEDS_ATTENTION: `sent` (with `tx_hash` and `fee`) or
    `not_sent` while the sending venue's answer is unknown; `credited` or `returned` while the receiving
    venue's credit is missing."""

    model_config = ConfigDict(extra="forbid")

    outcome: ResolutionOutcomeKind
    note: str = Field(min_length=1, max_length=500, description="what ops established, and with whom")
    tx_hash: str | None = Field(default=None, min_length=1, max_length=200)
    fee: DecimalStr | None = None
    venue_withdrawal_id: str | None = Field(default=None, min_length=1, max_length=200)


# A refusal by the saga, as HTTP: not its turn (409), the word lacks facts (422), the proof failed (403).
_REFUSAL_STATUS = {"not_waiting": 409, "wrong_stage": 409, "incomplete": 422}


@router.post(
    "/{transfer_id}/resolve",
    response_model=TransferResolutionOutcome,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def resolve(
    transfer_id: uuid.UUID, body: ResolveBody, staff: OpsWithTotp, settings: SettingsDep, client: TemporalDep
) -> TransferResolutionOutcome:
    """Resolve a transfer in NEEDS_ATTENTION (needs `X-TOTP-Code`); above the limit two staff must agree."""
    from workflows.treasury import float_transfer_workflow_id

    resolution = TransferResolution(
        outcome=body.outcome, note=body.note, staff_id=staff.id, tx_hash=body.tx_hash,
        fee=None if body.fee is None else Decimal(body.fee), venue_withdrawal_id=body.venue_withdrawal_id,
    )  # fmt: skip
    tokens = DecisionTokens.from_secret(
        settings.jwt_secret, timedelta(seconds=settings.decision_token_ttl_seconds)
    )
    resolution.token = tokens.issue(
        actor_id=staff.id, withdrawal_id=transfer_id, action=resolution.action, now=datetime.now(UTC),
        detail=resolution.proof_detail,
    )  # fmt: skip
    handle = client.get_workflow_handle(float_transfer_workflow_id(transfer_id))
    with saga_answers(
        gone=ProblemError(404, "not_found", "no such float transfer waiting for ops"),
        refused=ProblemError(409, "not_waiting", "the transfer is not waiting for ops"),
    ):
        outcome = await handle.execute_update("resolve", resolution, result_type=TransferResolutionOutcome)
    if not outcome.accepted:
        raise ProblemError(
            _REFUSAL_STATUS.get(outcome.code, 403), outcome.code, outcome.detail or outcome.code
        )
    return outcome

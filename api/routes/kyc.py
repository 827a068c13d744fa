"""KYC: the customer's tiers (`/kyc`), the vendor's webhook (`/webhooks/kyc`) and compliance's review queue
(`/admin/kyc`, compliance role, TOTP on every decision).

A submission's row and its saga (`KYCWorkflow`, id `kyc-<submission id>`) start as one unit: when Temporal
cannot take the saga the row is withdrawn and the answer is 503, so nothing is left half-started.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth_deps import ComplianceWithTotp, CurrentUser, problem_responses, require_role
from api.deps import EngineDep, SessionDep, SettingsDep, TemporalDep
from api.errors import ProblemError, ServiceUnavailable
from api.sagas import saga_answers
from config import Settings
from models.kyc import (
    DocumentOut,
    KycInput,
    KycOverview,
    KycStatus,
    ReviewDecision,
    ReviewOutcome,
    SubmissionOut,
    Tier1In,
    Tier3In,
    VendorHint,
)
from models.users import User
from providers.kyc import (
    DIGEST_ALG_HEADER,
    DIGEST_HEADER,
    InvalidDigest,
    KycVendorClient,
    parse_webhook,
    verify_digest,
)
from services import first_trade_gates, kyc, kyc_documents, kyc_events, kyc_review
from services.decision_tokens import DecisionTokens
from temporal import search_attributes as sa
from temporal import task_queues
from workflows.kyc import KYCWorkflow, kyc_workflow_id

log = logging.getLogger(__name__)
router = APIRouter(tags=["kyc"])
Compliance = Annotated[User, Depends(require_role("compliance"))]


def kyc_vendor(request: Request, settings: SettingsDep) -> KycVendorClient:
    """The process's one vendor client, built on first use (closed by the app's lifespan)."""
    vendor: KycVendorClient | None = getattr(request.app.state, "kyc_vendor", None)
    if vendor is None:
        vendor = KycVendorClient.from_settings(settings)
        request.app.state.kyc_vendor = vendor
    return vendor


VendorDep = Annotated[KycVendorClient, Depends(kyc_vendor)]


async def _gates(session: Any, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The FCA first-trade gates (`services.first_trade_gates`), shown beside the tiers."""
    return [_as_dict(g) for g in await first_trade_gates.status(session, user_id)]


def _as_dict(gate: Any) -> dict[str, Any]:
    if isinstance(gate, BaseModel):
        return gate.model_dump(mode="json")
    if dataclasses.is_dataclass(gate) and not isinstance(gate, type):
        return dataclasses.asdict(gate)
    return dict(gate)


def _input(
    settings: Settings,
    submission_id: uuid.UUID,
    user_id: uuid.UUID,
    tier: int,
    applicant_id: str | None = None,
) -> KycInput:
    return KycInput(
        submission_id=submission_id,
        user_id=user_id,
        tier=tier,
        applicant_id=applicant_id,
        vendor_poll_seconds=settings.kyc_vendor_poll_seconds,
        vendor_poll_max_seconds=settings.kyc_vendor_poll_max_seconds,
        vendor_timeout_seconds=settings.kyc_vendor_timeout_seconds,
        resubmit_timeout_seconds=settings.kyc_resubmit_timeout_seconds,
    )


async def _start(client: Client, engine: AsyncEngine, k: KycInput) -> SubmissionOut:
    try:
        await client.start_workflow(
            KYCWorkflow.run,
            k,
            id=kyc_workflow_id(k.submission_id),
            task_queue=task_queues.KYC,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(sa.CUSTOMER_ID, str(k.user_id)),
                    SearchAttributePair(sa.KYC_STATUS, KycStatus.PENDING.value),
                    SearchAttributePair(sa.KYC_TIER, k.tier),
                ]
            ),
        )
    except WorkflowAlreadyStartedError:
        pass  # a repeated submit of the same tier-2 draft: its saga is already running
    except RPCError as e:
        if k.tier != 2:  # a tier-2 draft keeps its documents; the customer submits again
            await kyc.withdraw_submission(engine, k.submission_id)
        raise ServiceUnavailable("temporal") from e
    return SubmissionOut(
        id=k.submission_id,
        tier=k.tier,
        status=KycStatus.PENDING.value,
        message=kyc.customer_message(KycStatus.PENDING),
    )


@router.get("/kyc", response_model=KycOverview, responses=problem_responses(401))
async def overview(user: CurrentUser, engine: EngineDep, session: SessionDep) -> KycOverview:
    """Your KYC tier, submissions, what the next tier needs, your 24 h limits and the first-trade gates."""
    return await kyc.overview(engine, user.id, await _gates(session, user.id))


@router.post(
    "/kyc/tier1", status_code=202, response_model=SubmissionOut, responses=problem_responses(401, 409, 422)
)
async def tier1(
    body: Tier1In, user: CurrentUser, engine: EngineDep, client: TemporalDep, settings: SettingsDep
) -> SubmissionOut:
    """Basic KYC: name, date of birth, address and phone; screened, then granted or reviewed."""
    submission_id = await kyc.submit_tier1(engine, user.id, body)
    return await _start(client, engine, _input(settings, submission_id, user.id, 1))


@router.post(
    "/kyc/tier2/documents", response_model=DocumentOut, responses=problem_responses(401, 409, 422, 503)
)
async def tier2_document(
    user: CurrentUser,
    engine: EngineDep,
    settings: SettingsDep,
    vendor: VendorDep,
    id_doc_type: Annotated[str, Form(max_length=32)],
    country: Annotated[str, Form(max_length=3)],
    file: Annotated[UploadFile, File()],
) -> DocumentOut:
    """Upload an identity document (passport, ID card, driving licence) for the tier-2 check."""
    content = await file.read(settings.kyc_document_max_bytes + 1)
    return await kyc_documents.upload(
        engine,
        vendor,
        user.id,
        level_name=settings.kyc_level_names[2],
        id_doc_type=id_doc_type,
        country=country,
        filename=file.filename or "document",
        content_type=file.content_type or "",
        content=content,
        max_bytes=settings.kyc_document_max_bytes,
    )


@router.post(
    "/kyc/tier2/submit",
    status_code=202,
    response_model=SubmissionOut,
    responses=problem_responses(401, 409, 503),
)
async def tier2_submit(
    user: CurrentUser, engine: EngineDep, client: TemporalDep, settings: SettingsDep
) -> SubmissionOut:
    """Send the uploaded documents for verification (again, when we asked you to resubmit)."""
    submission_id, status, applicant_id = await kyc.tier2_submission(engine, user.id)
    if status == KycStatus.DRAFT:
        return await _start(client, engine, _input(settings, submission_id, user.id, 2, applicant_id))
    handle = client.get_workflow_handle(kyc_workflow_id(submission_id))
    not_awaiting = ProblemError(409, "kyc_not_awaiting_documents", "your documents are already being checked")
    with saga_answers(gone=not_awaiting):
        await handle.execute_update("resubmitted")
    return SubmissionOut(
        id=submission_id,
        tier=2,
        status=KycStatus.VENDOR_CHECK.value,
        message=kyc.customer_message(KycStatus.VENDOR_CHECK),
    )


@router.post(
    "/kyc/tier3", status_code=202, response_model=SubmissionOut, responses=problem_responses(401, 409, 422)
)
async def tier3(
    user: CurrentUser,
    engine: EngineDep,
    client: TemporalDep,
    settings: SettingsDep,
    questionnaire: Annotated[str, Form(max_length=20000, description="Tier3In as JSON")],
    evidence: Annotated[list[UploadFile], File()],
) -> SubmissionOut:
    """Enhanced due diligence: the source-of-funds questionnaire and evidence, reviewed by compliance."""
    try:
        data = Tier3In.model_validate_json(questionnaire)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(["questionnaire", *(str(p) for p in first["loc"])])
        raise ProblemError(
            422,
            "validation_error",
            f"invalid input: {field}",
            errors=[{"field": field, "message": first["msg"], "type": first["type"]}],
        ) from e
    files = [
        kyc.Evidence(
            filename=f.filename or "evidence",
            content_type=f.content_type or "",
            content=await f.read(settings.kyc_document_max_bytes + 1),
        )
        for f in evidence
    ]
    submission_id = await kyc.submit_tier3(
        engine, user.id, data, files, max_bytes=settings.kyc_document_max_bytes
    )
    return await _start(client, engine, _input(settings, submission_id, user.id, 3))


# --- the vendor ---------------------------------------------------------------------------------


class KycWebhookAck(BaseModel):
    status: str  # accepted | duplicate | ignored


@router.post("/webhooks/kyc", response_model=KycWebhookAck, responses=problem_responses(400, 401, 503))
async def kyc_webhook(
    request: Request, settings: SettingsDep, engine: EngineDep, client: TemporalDep
) -> KycWebhookAck:
    """The vendor's signed applicant event: verified on the raw body, recorded once, passed to the saga."""
    raw = await request.body()
    try:
        verify_digest(
            settings.kyc_webhook_secret,
            raw,
            request.headers.get(DIGEST_HEADER),
            request.headers.get(DIGEST_ALG_HEADER),
        )
    except InvalidDigest as e:
        log.warning(json.dumps({"event": "kyc_webhook.refused", "why": str(e)}))
        raise ProblemError(401, "invalid_signature", "the payload digest does not verify") from e
    try:
        event = parse_webhook(raw)
    except ValueError as e:
        raise ProblemError(400, "malformed_event", "not an applicant event") from e
    submission_id = await kyc_events.open_submission_for_applicant(engine, event.applicant_id)
    digest, signalled = await kyc_events.record_vendor_event(
        engine,
        raw=raw,
        applicant_id=event.applicant_id,
        kind=event.type,
        body=event.raw,
        submission_id=submission_id,
    )
    if signalled:
        return KycWebhookAck(status="duplicate")
    if submission_id is None:
        return KycWebhookAck(status="ignored")
    try:
        await client.get_workflow_handle(kyc_workflow_id(submission_id)).signal(
            "vendor_event", VendorHint(type=event.type, review_status=event.review_status)
        )
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:  # a draft (no saga yet) or a finished one: nothing to tell
            return KycWebhookAck(status="ignored")
        raise ServiceUnavailable("temporal") from e
    await kyc_events.mark_event_signalled(engine, digest)
    return KycWebhookAck(status="accepted")


# --- compliance -----------------------------------------------------------------------------------


class ReviewBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class ReviewTokenBody(BaseModel):
    approve: bool


class ReviewTokenOut(BaseModel):
    token: str
    reviewer_id: uuid.UUID
    expires_in: int


def _token(settings: Settings, staff: User, submission_id: uuid.UUID, approve: bool) -> str:
    tokens = DecisionTokens.from_secret(
        settings.jwt_secret, timedelta(seconds=settings.decision_token_ttl_seconds)
    )
    return tokens.issue(
        actor_id=staff.id,
        kyc_submission_id=submission_id,
        action="kyc_approve" if approve else "kyc_reject",
        now=datetime.now(UTC),
    )


@router.get(
    "/admin/kyc/reviews", response_model=list[kyc_review.ReviewItem], responses=problem_responses(401, 403)
)
async def review_queue(staff: Compliance, engine: EngineDep) -> list[kyc_review.ReviewItem]:
    """Submissions waiting for compliance, oldest first, with the screening matches and their explanations."""
    return await kyc_review.review_queue(engine)


async def decide_review(
    client: Client, settings: Settings, staff: User, submission_id: uuid.UUID, approve: bool, reason: str
) -> ReviewOutcome:
    """Send compliance's decision (with its token, signed after the caller checked TOTP) to the KYC saga as
    the `review` update; the saga's answer, or the problem it stands for. Used by this API and the console."""
    decision = ReviewDecision(
        reviewer_id=staff.id,
        approve=approve,
        reason=reason,
        token=_token(settings, staff, submission_id, approve),
    )
    handle = client.get_workflow_handle(kyc_workflow_id(submission_id))
    with saga_answers(
        gone=ProblemError(404, "not_found", "no such KYC submission in review"),
        refused=ProblemError(409, "not_in_review", "this submission is not waiting for a review"),
    ):
        outcome = await handle.execute_update("review", decision, result_type=ReviewOutcome)
    if not outcome.accepted:
        raise ProblemError(
            403 if outcome.code != "not_in_review" else 409, outcome.code, outcome.detail or outcome.code
        )
    return outcome


@router.post(
    "/admin/kyc/{submission_id}/approve",
    response_model=ReviewOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def approve(
    submission_id: uuid.UUID,
    body: ReviewBody,
    staff: ComplianceWithTotp,
    client: TemporalDep,
    settings: SettingsDep,
) -> ReviewOutcome:
    """Grant the tier under review (needs `X-TOTP-Code`; never your own)."""
    return await decide_review(client, settings, staff, submission_id, True, body.reason)


@router.post(
    "/admin/kyc/{submission_id}/reject",
    response_model=ReviewOutcome,
    responses=problem_responses(401, 403, 404, 409),
)
async def reject(
    submission_id: uuid.UUID,
    body: ReviewBody,
    staff: ComplianceWithTotp,
    client: TemporalDep,
    settings: SettingsDep,
) -> ReviewOutcome:
    """Refuse the tier under review (needs `X-TOTP-Code`); the customer is told without a reason."""
    return await decide_review(client, settings, staff, submission_id, False, body.reason)


@router.post(
    "/admin/kyc/{submission_id}/decision-token",
    response_model=ReviewTokenOut,
    responses=problem_responses(401, 403, 422),
)
async def decision_token(
    submission_id: uuid.UUID, body: ReviewTokenBody, staff: ComplianceWithTotp, settings: SettingsDep
) -> ReviewTokenOut:
    """A short-lived token proving your review, for the Temporal CLI/Web UI `review` update (TOTP)."""
    return ReviewTokenOut(
        token=_token(settings, staff, submission_id, body.approve),
        reviewer_id=staff.id,
        expires_in=settings.decision_token_ttl_seconds,
    )

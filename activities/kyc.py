"""The KYC saga's activities: thin, idempotent methods over `services.kyc`, the vendor client and email.

Every one is keyed by the submission id and safe to repeat: recording a state that is already recorded
changes nothing; asking the vendor for a check while one is under way is accepted by the vendor; reading
the vendor's status is a question. Vendor errors cross as `ApplicationError` types the workflow names:
`KycVendorRetryable` is retried by Temporal (the vendor may be down), `KycVendorRefused` is not.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from config import Settings
from models.kyc import (
    KycInput,
    KycStatus,
    ReviewCheck,
    ReviewOutcome,
    ScreenResult,
    StatusChange,
    VendorOutcome,
)
from providers.email import EmailMessage, EmailSender
from providers.kyc import KycVendorClient, KycVendorRefused, KycVendorRetryable
from services import kyc, kyc_review
from services.decision_tokens import DecisionTokens, ProofInvalid
from services.notifications import NotificationEvent, enqueue
from services.screening.service import ScreeningConfig


class KycErrors:
    VENDOR_RETRYABLE = "KycVendorRetryable"
    VENDOR_REFUSED = "KycVendorRefused"
    EMAIL = "EmailDelivery"


def kyc_status_email(change: StatusChange) -> EmailMessage:
    """The customer's mail for a state: the fixed words of `services.kyc.customer_message` only."""
    line = kyc.customer_message(change.status, change.vendor)
    subject = f"Identity verification (tier {change.tier}): {change.status.value.replace('_', ' ').lower()}"
    return EmailMessage(
        subject=subject,
        text=line + "\n",
        html="<!doctype html><html><body><h1>Identity verification</h1>"
        f"<p>{html.escape(line)}</p></body></html>",
    )


def hash_text(value: str) -> str:
    """A short digest: a second resubmission request with other words is a new notification."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


class KycActivities:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        vendor: Callable[[], KycVendorClient] | None,
        email: EmailSender | None,
    ) -> None:
        self._engine = engine
        self._vendor = vendor
        self._email = email
        self._screening = ScreeningConfig.from_settings(settings)
        self._tokens = DecisionTokens.from_secret(settings.jwt_secret)

    def _client(self) -> KycVendorClient:
        """Built on first use: a worker serving other queues needs no vendor configured."""
        if self._vendor is None:
            raise ApplicationError(
                "no KYC vendor configured", type=KycErrors.VENDOR_REFUSED, non_retryable=True
            )
        return self._vendor()

    @activity.defn(name="kyc.screen")
    async def screen(self, k: KycInput) -> ScreenResult:
        """Sanctions and PEP screening of the customer (services.screening records the `aml_checks`)."""
        return await kyc.screen(self._engine, self._screening, k.submission_id)

    @activity.defn(name="kyc.request_check")
    async def request_check(self, k: KycInput) -> None:
        """Ask the vendor to review the applicant's documents (idempotent at the vendor)."""
        try:
            await self._client().request_check(str(k.applicant_id))
        except KycVendorRetryable as e:
            raise ApplicationError(str(e), type=KycErrors.VENDOR_RETRYABLE) from e
        except KycVendorRefused as e:
            raise ApplicationError(str(e), type=KycErrors.VENDOR_REFUSED, non_retryable=True) from e

    @activity.defn(name="kyc.vendor_review")
    async def vendor_review(self, k: KycInput) -> VendorOutcome:
        """The applicant's review as the vendor shows it now (the truth a webhook only hints at)."""
        try:
            review = await self._client().review(str(k.applicant_id))
        except KycVendorRetryable as e:
            raise ApplicationError(str(e), type=KycErrors.VENDOR_RETRYABLE) from e
        except KycVendorRefused as e:
            raise ApplicationError(str(e), type=KycErrors.VENDOR_REFUSED, non_retryable=True) from e
        return VendorOutcome(
            status=review.status,
            answer=review.answer,
            reject_type=review.reject_type,
            reject_labels=list(review.reject_labels),
            moderation_comment=review.moderation_comment,
            attempt=review.attempt,
        )

    @activity.defn(name="kyc.record")
    async def record(self, change: StatusChange) -> bool:
        """Write the state to `kyc_submissions` and the audit log (and the tier on APPROVED)."""
        return await kyc.apply_status(self._engine, change)

    @activity.defn(name="kyc.notify")
    async def notify(self, change: StatusChange) -> None:
        """The customer's notification of the state's fixed message (never a screening or compliance
        reason), to the outbox keyed by submission and state: a retry enqueues nothing new (issue 17)."""
        if change.status is KycStatus.DRAFT:
            return
        comment = change.vendor.moderation_comment if change.vendor is not None else ""
        async with self._engine.begin() as conn:
            await enqueue(
                conn,
                event=NotificationEvent.KYC_STATUS_CHANGED,
                user_id=change.user_id,
                payload={"status": change.status.value, "tier": change.tier, "moderation_comment": comment},
                dedupe_key=f"kyc:{change.submission_id}:{change.status.value}:{hash_text(comment)}",
            )

    @activity.defn(name="kyc.verify_review")
    async def verify_review(self, check: ReviewCheck) -> ReviewOutcome:
        """Accepted if the review is proven (token for this reviewer, submission and action) and the reviewer
        is an active compliance user other than the customer; refusals are audited and say why."""
        problem: str | None = None
        code = "unproven"
        try:
            self._tokens.verify(
                check.token,
                actor_id=check.reviewer_id,
                kyc_submission_id=check.submission_id,
                action=check.action,
                now=datetime.now(UTC),
            )
        except ProofInvalid as e:
            problem = str(e)
        async with self._engine.begin() as conn:
            if problem is None:
                problem = await kyc_review.review_problem(conn, check.reviewer_id, check.user_id)
                code = "not_a_reviewer"
            if problem is not None:
                await kyc.audit(
                    conn,
                    f"kyc.review.{check.action}.refused",
                    actor_id=None,
                    actor_type="staff",
                    submission_id=check.submission_id,
                    claimed_actor=str(check.reviewer_id),
                    refusal=problem,
                )
        if problem is not None:
            return ReviewOutcome(accepted=False, code=code, detail=problem)
        return ReviewOutcome(accepted=True, code="proven")

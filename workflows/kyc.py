"""The KYC saga: one `KYCWorkflow` per submission, id `kyc-<submission id>`, on the `broker-kyc` queue.

Phases: screen (sanctions and PEP, every tier) -> vendor check (tier 2: ask the vendor for a review, wait
for its webhook, ask the vendor itself when none comes, give up after the vendor timeout) -> decide:
GREEN and no possible screening match: the tier is granted; RED + RETRY: the customer is asked to upload
again and the saga waits (with expiry) for `resubmitted`; RED + FINAL: rejected; a possible match, and
every tier-3 submission: compliance reviews.

People and the vendor talk to it through:
- signal `vendor_event` (from the webhook route, after it verified the vendor's digest): only a reason to
  read the applicant's status from the vendor now. The verdict always comes from that read, so a stale,
  duplicated, reordered or forged event cannot decide anything.
- update `resubmitted` (the customer, through the API, after new documents): validated to be allowed only
  while a resubmission is requested.
- update `review` (compliance, through the admin API after TOTP, or the Temporal CLI with a token from
  `POST /api/v1/admin/kyc/{id}/decision-token`): the validator refuses it outside IN_REVIEW, without a
  token, or from the customer; the handler then verifies the token and the reviewer's compliance role in
  an activity.
- query `state`.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.errors import ErrorType
    from activities.kyc import KycActivities, KycErrors
    from models.kyc import (
        KycInput,
        KycState,
        KycStatus,
        ReviewCheck,
        ReviewDecision,
        ReviewOutcome,
        StatusChange,
        VendorHint,
        VendorOutcome,
    )
    from temporal.search_attributes import KYC_STATUS, KYC_TIER

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# The vendor may be down for a while: keep asking (every call is idempotent), but not for a refusal.
VENDOR_TIMEOUT = timedelta(seconds=30)
VENDOR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[KycErrors.VENDOR_REFUSED],
)
# Screening reads the whole list index; a few minutes at most.
SCREEN_TIMEOUT = timedelta(minutes=5)
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)


def kyc_workflow_id(submission_id: uuid.UUID | str) -> str:
    return f"kyc-{submission_id}"


@workflow.defn(name="KYCWorkflow")
class KYCWorkflow:
    """Guarantees: a tier is granted only after screening found no possible match and (tier 2) the vendor's
    own status said GREEN, or after a compliance decision proven by a token of an active compliance user
    who is not the customer; tier 3 always needs that decision. An unanswered vendor is asked again until
    the vendor timeout, never read as an answer. Every state is written to `kyc_submissions` and the audit
    log before the customer is emailed, and the customer's emails never carry a screening reason."""

    @workflow.init
    def __init__(self, k: KycInput) -> None:
        self._k = k
        self._status = KycStatus.PENDING
        self._hints = 0
        self._resubmitted = False
        self._decision: ReviewDecision | None = None
        self._possible_match = False
        self._vendor: VendorOutcome | None = None
        self._reviews = asyncio.Lock()

    # --- the outside world -------------------------------------------------------------------

    @workflow.signal(name="vendor_event")
    def vendor_event(self, hint: VendorHint) -> None:
        self._hints += 1

    @workflow.update(name="resubmitted")
    def resubmitted(self) -> KycState:
        self._resubmitted = True
        return self.state()

    @resubmitted.validator
    def _resubmit_allowed(self) -> None:
        if self._status is not KycStatus.RESUBMIT_REQUESTED or self._resubmitted:
            raise ApplicationError(
                f"the submission is {self._status.value}", type=ErrorType.KYC_NOT_AWAITING_DOCUMENTS
            )

    @workflow.update(name="review")
    async def review(self, decision: ReviewDecision) -> ReviewOutcome:
        async with self._reviews:
            if self._status is not KycStatus.IN_REVIEW or self._decision is not None:
                return ReviewOutcome(accepted=False, code="not_in_review", status=self._status.value)
            verdict = await workflow.execute_activity_method(
                KycActivities.verify_review,
                ReviewCheck(
                    submission_id=self._k.submission_id,
                    user_id=self._k.user_id,
                    reviewer_id=decision.reviewer_id,
                    action="kyc_approve" if decision.approve else "kyc_reject",
                    reason=decision.reason,
                    token=decision.token,
                ),
                start_to_close_timeout=DB_TIMEOUT,
                retry_policy=DB_RETRY,
            )
            if not verdict.accepted:
                verdict.status = self._status.value
                return verdict
            self._decision = decision
            return ReviewOutcome(
                accepted=True, code="approved" if decision.approve else "rejected", status=self._status.value
            )

    @review.validator
    def _review_allowed(self, decision: ReviewDecision) -> None:
        """Refused before anything is recorded: outside IN_REVIEW, by the customer, or with no proof."""
        if self._status is not KycStatus.IN_REVIEW or self._decision is not None:
            raise ApplicationError(
                f"the submission is {self._status.value}", type=ErrorType.KYC_NOT_IN_REVIEW
            )
        if decision.reviewer_id == self._k.user_id:
            raise ApplicationError("a customer cannot review their own KYC", type=ErrorType.KYC_SELF_REVIEW)
        if not decision.token:
            raise ApplicationError(
                "a review needs a decision token (TOTP-checked)", type=ErrorType.KYC_UNPROVEN
            )

    @workflow.query(name="state")
    def state(self) -> KycState:
        return KycState(
            submission_id=self._k.submission_id,
            tier=self._k.tier,
            status=self._status.value,
            possible_match=self._possible_match,
            vendor=self._vendor,
        )

    # --- the saga -----------------------------------------------------------------------------

    @workflow.run
    async def run(self, k: KycInput) -> KycState:
        await self._set(KycStatus.PENDING)
        screened = await workflow.execute_activity_method(
            KycActivities.screen,
            k,
            start_to_close_timeout=SCREEN_TIMEOUT,
            retry_policy=DB_RETRY,
        )
        self._possible_match = screened.possible_match
        if k.tier == 2:
            done = await self._vendor_phase(k)
            if done:
                return self.state()
        if k.tier == 3 or self._possible_match:
            reason = "possible screening match" if self._possible_match else "tier 3: source of funds"
            await self._set(KycStatus.IN_REVIEW, internal=reason)
            await self._await_review_outcome()
            return self.state()
        await self._set(KycStatus.APPROVED)
        return self.state()

    async def _vendor_phase(self, k: KycInput) -> bool:
        """Rounds of vendor checks until GREEN (False: go on deciding) or an ending (True: finished)."""
        last_attempt = 0
        while True:
            await self._set(KycStatus.VENDOR_CHECK)
            try:
                await workflow.execute_activity_method(
                    KycActivities.request_check,
                    k,
                    start_to_close_timeout=VENDOR_TIMEOUT,
                    retry_policy=VENDOR_RETRY,
                )
            except ActivityError as e:
                # The vendor refused to start a check (documents missing on its side, applicant blocked):
                # a person has to look; nothing is granted.
                await self._set(KycStatus.IN_REVIEW, internal=f"the vendor refused the check: {_cause(e)}")
                return await self._await_review_outcome()
            try:
                outcome = await self._vendor_outcome(k, after_attempt=last_attempt)
            except ActivityError as e:
                # The vendor refuses to show the applicant (deleted, wrong level): never a verdict, and not
                # a failure of the customer's either; compliance looks.
                await self._set(KycStatus.IN_REVIEW, internal=f"the vendor refused the status: {_cause(e)}")
                return await self._await_review_outcome()
            if outcome is None:
                await self._set(KycStatus.EXPIRED, internal="no vendor review before the timeout")
                return True
            self._vendor = outcome
            last_attempt = outcome.attempt
            if outcome.answer == "GREEN":
                return False
            if outcome.reject_type == "RETRY":
                self._resubmitted = False
                await self._set(KycStatus.RESUBMIT_REQUESTED, vendor=outcome, internal="vendor: RED/RETRY")
                try:
                    await workflow.wait_condition(
                        lambda: self._resubmitted, timeout=timedelta(seconds=k.resubmit_timeout_seconds)
                    )
                except TimeoutError:
                    await self._set(KycStatus.EXPIRED, internal="no resubmission before the timeout")
                    return True
                continue
            await self._set(KycStatus.REJECTED, vendor=outcome, internal="vendor: RED/FINAL")
            return True

    async def _await_review_outcome(self) -> bool:
        """Wait (visibly IN_REVIEW, no expiry) for a proven compliance decision and record it."""
        await workflow.wait_condition(lambda: self._decision is not None)
        decision = self._decision
        assert decision is not None
        await self._set(
            KycStatus.APPROVED if decision.approve else KycStatus.REJECTED,
            internal=f"compliance: {decision.reason}",
            reviewer_id=decision.reviewer_id,
        )
        return True

    async def _vendor_outcome(self, k: KycInput, *, after_attempt: int) -> VendorOutcome | None:
        """The vendor's completed review of an attempt after `after_attempt`, read from the vendor each
        time a webhook hints at news or the poll interval passes; None after the vendor timeout.

        Without webhooks the interval doubles up to `vendor_poll_max_seconds`, so a vendor silent for the
        whole timeout (14 days) costs tens of polls in the history, not thousands."""
        deadline = workflow.now() + timedelta(seconds=k.vendor_timeout_seconds)
        poll = timedelta(seconds=k.vendor_poll_seconds)
        longest = max(poll, timedelta(seconds=k.vendor_poll_max_seconds))
        seen = self._hints
        while True:
            remaining = deadline - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        lambda: self._hints > seen,  # noqa: B023 (awaited at once)
                        timeout=min(poll, remaining),
                    )
                except TimeoutError:
                    poll = min(poll * 2, longest)
            seen = self._hints
            outcome = await workflow.execute_activity_method(
                KycActivities.vendor_review,
                k,
                start_to_close_timeout=VENDOR_TIMEOUT,
                retry_policy=VENDOR_RETRY,
            )
            if outcome.completed and outcome.attempt > after_attempt:
                return outcome
            if workflow.now() >= deadline:
                return None

    async def _set(
        self,
        status: KycStatus,
        *,
        internal: str | None = None,
        vendor: VendorOutcome | None = None,
        reviewer_id: uuid.UUID | None = None,
    ) -> None:
        """Record, publish and tell the customer one state (record first: the mail follows the books)."""
        self._status = status
        workflow.upsert_search_attributes(
            [KYC_STATUS.value_set(status.value), KYC_TIER.value_set(self._k.tier)]
        )
        change = StatusChange(
            submission_id=self._k.submission_id,
            user_id=self._k.user_id,
            tier=self._k.tier,
            status=status,
            internal_reason=internal,
            vendor=vendor,
            reviewer_id=reviewer_id,
        )
        await workflow.execute_activity_method(
            KycActivities.record, change, start_to_close_timeout=DB_TIMEOUT, retry_policy=DB_RETRY
        )
        try:
            await workflow.execute_activity_method(
                KycActivities.notify, change, start_to_close_timeout=NOTIFY_TIMEOUT, retry_policy=NOTIFY_RETRY
            )
        except ActivityError:
            workflow.logger.warning("KYC email to the customer failed for %s", status.value)


def _cause(e: ActivityError) -> str:
    cause = e.cause
    return str(cause.message) if isinstance(cause, ApplicationError) else "unknown"

"""The withdrawal saga's fixed parts (workflows/withdrawals.py holds its steps).

How long, and how often, each kind of step may try; which states the customer may still cancel in;
and how ops' word on a withdrawal in NEEDS_ATTENTION reads as an outcome. Pure and deterministic:
imported by the workflow inside Temporal's sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.errors import ErrorType
    from models.payments import ExecutionOutcome, Resolution, WithdrawalStatus

DB_TIMEOUT = timedelta(seconds=30)
DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[ErrorType.INSUFFICIENT_FUNDS, ErrorType.LEDGER_REFUSED],
)
# Sending money: one attempt per send decision, never retried by Temporal. A send that fails or times out
# is an unknown outcome, settled by looking our id up, never by sending again.
SEND_TIMEOUT = timedelta(seconds=60)
SEND_ONCE = RetryPolicy(maximum_attempts=1)
# Lookups are questions: a few quick retries, then the answer is "unknown" and the workflow asks later.
LOOKUP_TIMEOUT = timedelta(seconds=60)
LOOKUP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)
# Sends and lookups heartbeat while the bank or venue answers: a worker that dies mid-call is noticed this
# fast (the send's outcome is then unknown and looked up) instead of after the whole start-to-close.
CALL_HEARTBEAT = timedelta(seconds=10)
NOTIFY_TIMEOUT = timedelta(seconds=30)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)

# Until execution starts the customer may take the withdrawal back; once the money may have left
# (PROCESSING, NEEDS_ATTENTION) or the withdrawal is final, there is nothing to take back.
CANCELLABLE = frozenset(
    {
        WithdrawalStatus.PENDING,
        WithdrawalStatus.AWAITING_APPROVAL,
        WithdrawalStatus.APPROVED,
        WithdrawalStatus.HALTED,
    }
)
# AML screening (the `_screen` phase): the patch marker that lets older histories replay without it, and
# what the customer is told. Neutral on purpose: no customer ever learns that, or why, compliance looked.
AML_SCREEN_PATCH = "aml-screen-withdrawal"
UNDER_REVIEW_REASON = "under review"
REFUSED_REASON = "withdrawal refused"

# Outcomes that are not yet known: asked about (webhook or lookup) until they are.
UNSETTLED = ("unknown", "pending", "absent")


def resolved_outcome(resolution: Resolution, known: ExecutionOutcome) -> ExecutionOutcome:
    """Ops' proven word as the outcome: paid (with what we knew of the payout) or not paid."""
    who = f"ops ({resolution.staff_id})"
    if resolution.paid:
        return ExecutionOutcome(
            status="completed",
            provider_ref=resolution.provider_ref or known.provider_ref,
            tx_hash=known.tx_hash,
            network_fee=known.network_fee,
            reason=f"marked paid by {who}: {resolution.reason}",
        )
    return ExecutionOutcome(status="failed", reason=f"marked not paid by {who}: {resolution.reason}")


def failure_reason(e: ActivityError, default: str | None = None) -> str:
    """The activity's own error message; else `default`, or what Temporal says (a timeout, a lost worker)."""
    cause = e.cause
    if isinstance(cause, ApplicationError):
        return str(cause.message)
    return default if default is not None else str(e.message)

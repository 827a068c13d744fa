"""The order saga's fixed parts (workflows/orders.py holds its steps).

How long, and how often, each kind of step may try; which placement failures allow another venue;
what the customer reads while a placement is unresolved; and how a failed activity's error is read.
Pure and deterministic: imported by the workflow inside Temporal's sandbox.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import ErrorType
    from models.market import BestExecutionRecord

LOCAL = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=[ErrorType.REJECTED, ErrorType.NO_ROUTE, ErrorType.INSUFFICIENT_FUNDS],
)
PLACE_TIMEOUT = timedelta(seconds=60)
PLACE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=300),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=4,
    # A venue that refused, or was unavailable before taking the request, is replaced by the next best
    # at once; the activity itself is retried only after a timeout or a crash, when it may have sent.
    non_retryable_error_types=[ErrorType.VENUE_REFUSED, ErrorType.VENUE_UNAVAILABLE, ErrorType.UNRESOLVED],
)
# An unknown placement still unresolved after this much history is asked about hourly, so the wait
# can last months within Temporal's history limits (each round adds about ten events).
LONG_HISTORY_EVENTS = 10_000
LONG_UNKNOWN_RECHECK = timedelta(hours=1)
# The only placement failures after which another venue may be tried: the venue refused, or the
# request provably never reached it. Any other failure leaves the outcome unknown.
FALLBACK_ERRORS = (ErrorType.VENUE_REFUSED, ErrorType.VENUE_UNAVAILABLE, ErrorType.NOT_RECEIVED)
# A worker that dies while placing is noticed this fast; the retry then asks the venue first.
PLACE_HEARTBEAT = timedelta(seconds=4)
VENUE_TIMEOUT = timedelta(seconds=30)
VENUE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
# Reading the venue order ops named: a few tries only, so a mistyped id cannot stop the regular lookups.
NAMED_ORDER_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5)
NOTIFY_TIMEOUT = timedelta(seconds=20)
NOTIFY_RETRY = RetryPolicy(maximum_attempts=3)
# AML screening after settlement: retried for a while, never failing the order.
AML_SCREEN_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=2), maximum_attempts=5)
MAX_FALLBACKS = 3
# An order id is used once, ever: a second start, even after the first finished, is refused.
ID_REUSE_POLICY = WorkflowIDReusePolicy.REJECT_DUPLICATE

# Histories from before resolutions needed proof took a signal as it came; the patch keeps them replayable.
RESOLUTION_PROOF_PATCH = "placement-resolution-proof"

# What the customer and the order row read while a placement is unresolved (no venue text).
ATTENTION_REASON = (
    "the venue has not yet confirmed the order; it is being checked and the funds stay reserved"
)

# A failed regular activity arrives as ActivityError(cause=ApplicationError); a failed local activity
# arrives as the ApplicationError itself.
ACTIVITY_FAILURES = (ActivityError, ApplicationError)


def workflow_id(order_id: object) -> str:
    return f"order-{order_id}"


def error_type(e: BaseException) -> str | None:
    """The `ApplicationError` type a failed activity raised (None: a timeout, a lost worker, ...)."""
    cause = e.cause if isinstance(e, ActivityError) else e
    return cause.type if isinstance(cause, ApplicationError) else None


def error_message(e: BaseException) -> str:
    cause = e.cause if isinstance(e, ActivityError) else e
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


def record_of(e: BaseException) -> BestExecutionRecord | None:
    """The best-execution record a NO_ROUTE refusal carries (diagnostics), if it can be read back."""
    cause = e.cause if isinstance(e, ActivityError) else e
    if isinstance(cause, ApplicationError) and cause.type == ErrorType.NO_ROUTE and len(cause.details) >= 2:
        try:
            return BestExecutionRecord.model_validate(cause.details[1])
        except Exception:  # a record we cannot read back is only diagnostics
            return None
    return None

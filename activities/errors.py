"""How failures cross from an activity to its workflow: one registry of `ApplicationError` types, and one
mapping from the domain's errors onto them.

A workflow never sees a Python exception of ours, only an `ApplicationError` with a `type` string, and it
decides by that string: whether Temporal retries (a policy's `non_retryable_error_types`), whether an order
may go to another venue (`workflows/orders.py` `FALLBACK_ERRORS`), what the customer is told. So the strings
are a contract with every recorded history: `ErrorType` lists each of them once, and they never change.

Activities run their steps inside `application_errors()`, which raises the `ApplicationError` a domain
error stands for (`to_application_error`, most specific first, `raise … from e` so the cause keeps the
detail for staff). An error with no entry there is raised as it is, and Temporal retries it by the
activity's policy: a database that is down, a bug. An activity that needs a customer-facing message of
its own raises the domain error with that message inside the block (the ledger's own text names
internal account ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from providers.email import EmailDeliveryError
from providers.exchanges.base import AmbiguousPlacement, RetryableVenueError, TerminalVenueError, VenueError
from services import order_reasons
from services.aml.cases import CaseNotFound, CaseRefused
from services.aml.freeze import FreezeRefused
from services.holds import OwnerFinished
from services.ledger import InsufficientFunds, LedgerError
from services.orders import OrderRejected
from services.router import RoutingRefused


class ErrorType:
    """The `ApplicationError.type` strings activities raise and workflows match on. Stable: recorded
    histories hold them."""

    # orders
    REJECTED = "OrderRejected"  # validation, KYC, frozen account, limit (details: code)
    NO_ROUTE = "NoRoute"  # the router refused (details: refusal, best-execution record)
    VENUE_REFUSED = "VenueRefused"  # terminal at that venue: fall back
    VENUE_UNAVAILABLE = "VenueUnavailable"  # retryable at that venue, then fall back
    UNRESOLVED = "PlacementUnresolved"  # maybe sent, outcome unknown: keep asking, never fall back
    NOT_RECEIVED = "PlacementNotReceived"  # ops established the venue never got it: fall back
    # the ledger
    INSUFFICIENT_FUNDS = "InsufficientFunds"  # the customer's available balance cannot cover it
    LEDGER_REFUSED = "LedgerRefused"  # any other ledger refusal: retrying cannot change it
    # payments
    NOT_LIVE = "WithdrawalNotLive"  # the withdrawal is final or was never recorded: hold nothing
    UNKNOWN_PROVIDER = "UnknownProvider"  # no adapter is configured under that name
    NOT_CANCELLABLE = "NotCancellable"  # raised by the withdrawal saga's cancel update itself
    EMAIL_DELIVERY = "EmailDelivery"  # the mail provider refused or was unreachable: retried
    # KYC: raised by the KYC saga's update validators themselves (the caller's request is refused)
    KYC_NOT_AWAITING_DOCUMENTS = "NotAwaitingDocuments"
    KYC_NOT_IN_REVIEW = "NotInReview"
    KYC_SELF_REVIEW = "SelfReview"
    KYC_UNPROVEN = "Unproven"
    # AML cases: the SAR workflow's step does not fit the case (details: code); the decision is refused
    AML_CASE_REFUSED = "AmlCaseRefused"


REGISTERED: frozenset[str] = frozenset(
    value for name, value in vars(ErrorType).items() if not name.startswith("_") and isinstance(value, str)
)


def to_application_error(e: BaseException, *, placing: bool = False) -> ApplicationError | None:
    """The `ApplicationError` a domain error crosses the boundary as; None for an error that has none.

    `placing` is for a step that may have sent an order: there a venue's refusal is final at that venue
    (the workflow may use another) and an ambiguous answer is an unknown outcome, never a refusal. Any
    other step only asks a venue something, and every venue error means "could not ask now": retry.
    """
    if isinstance(e, ApplicationError):
        return None
    if isinstance(e, OrderRejected):
        return ApplicationError(e.reason, e.code, type=ErrorType.REJECTED, non_retryable=True)
    if isinstance(e, RoutingRefused):
        refusal = e.record.refusal.value if e.record.refusal else "refused"
        # The customer is told the refusal in our words; the record (details) keeps the venues' text.
        return ApplicationError(
            order_reasons.refusal(refusal),
            refusal,
            e.record.model_dump(mode="json"),
            type=ErrorType.NO_ROUTE,
            non_retryable=True,
        )
    if isinstance(e, InsufficientFunds):
        return ApplicationError(str(e), type=ErrorType.INSUFFICIENT_FUNDS, non_retryable=True)
    if isinstance(e, LedgerError):
        return ApplicationError(str(e), type=ErrorType.LEDGER_REFUSED, non_retryable=True)
    if isinstance(e, OwnerFinished):
        return ApplicationError(str(e), type=ErrorType.NOT_LIVE, non_retryable=True)
    if isinstance(e, CaseRefused | CaseNotFound | FreezeRefused):
        return ApplicationError(e.detail, e.code, type=ErrorType.AML_CASE_REFUSED, non_retryable=True)
    if isinstance(e, EmailDeliveryError):
        return ApplicationError(str(e), type=ErrorType.EMAIL_DELIVERY)
    if isinstance(e, VenueError):
        return _venue_error(e, placing=placing)
    return None


def _venue_error(e: VenueError, *, placing: bool) -> ApplicationError | None:
    if not placing:
        return ApplicationError(str(e), type=ErrorType.VENUE_UNAVAILABLE)
    if isinstance(e, AmbiguousPlacement):
        return ApplicationError(
            f"{e.provider}: placement outcome unknown ({e})", type=ErrorType.UNRESOLVED, non_retryable=True
        )
    if isinstance(e, TerminalVenueError):
        return ApplicationError(str(e), type=ErrorType.VENUE_REFUSED, non_retryable=True)
    if isinstance(e, RetryableVenueError):
        return ApplicationError(str(e), type=ErrorType.VENUE_UNAVAILABLE)
    return None  # anything else while placing may have sent: Temporal retries, and the retry asks first


@contextmanager
def application_errors(*, placing: bool = False) -> Iterator[None]:
    """Run an activity's step; a domain error leaves it as its `ApplicationError` (see the module)."""
    try:
        yield
    except Exception as e:
        mapped = to_application_error(e, placing=placing)
        if mapped is None:
            raise
        raise mapped from e


__all__ = ["REGISTERED", "ErrorType", "application_errors", "to_application_error"]

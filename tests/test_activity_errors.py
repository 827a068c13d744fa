"""The `ApplicationError` types are one registry (`activities/errors.py`), and it is exactly the set the
workflows match on plus the set activities raise; the strings the workflows rely on never change; and the one
mapping turns each domain error into the type the workflows expect."""

from __future__ import annotations

import ast
import importlib
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities.errors import REGISTERED, ErrorType, application_errors, to_application_error
from models.market import BestExecutionRecord, RefusalReason, Side
from providers.email import EmailDeliveryError
from providers.exchanges.base import (
    AmbiguousPlacement,
    InsufficientVenueFunds,
    OrderNotFoundAtVenue,
    RetryableVenueError,
    VenueError,
)
from services.aml.cases import CaseRefused
from services.holds import OwnerFinished
from services.ledger import HoldNotActive, IdempotencyConflict, InsufficientFunds
from services.orders import OrderRejected
from services.router import RoutingRefused

ROOT = Path(__file__).resolve().parent.parent

# The contract with every recorded history: a workflow's retry policies and branches match these strings.
RELIED_ON_BY_WORKFLOWS = {
    "REJECTED": "OrderRejected",
    "NO_ROUTE": "NoRoute",
    "INSUFFICIENT_FUNDS": "InsufficientFunds",
    "VENUE_REFUSED": "VenueRefused",
    "VENUE_UNAVAILABLE": "VenueUnavailable",
    "UNRESOLVED": "PlacementUnresolved",
    "NOT_RECEIVED": "PlacementNotReceived",
    "LEDGER_REFUSED": "LedgerRefused",
    "NOT_CANCELLABLE": "NotCancellable",
    "KYC_NOT_AWAITING_DOCUMENTS": "NotAwaitingDocuments",
    "KYC_NOT_IN_REVIEW": "NotInReview",
    "KYC_SELF_REVIEW": "SelfReview",
    "KYC_UNPROVEN": "Unproven",
    "AML_CASE_REFUSED": "AmlCaseRefused",
}


def _types_named_in(folder: str, *, skip: str | None = None) -> set[str]:
    """Every error type a package's modules name: `ErrorType.X` under any name the module binds the registry
    to (whatever it imported it from), and string literals given as `type=` to an `ApplicationError`."""
    found: set[str] = set()
    for path in sorted((ROOT / folder).glob("*.py")):
        if path.name == skip or path.name == "__init__.py":
            continue
        module = importlib.import_module(f"{folder}.{path.stem}")
        aliases = {name for name, value in vars(module).items() if value is ErrorType}
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id in aliases:
                    found.add(getattr(ErrorType, node.attr))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ApplicationError":
                for kw in node.keywords:
                    if kw.arg == "type" and isinstance(kw.value, ast.Constant):
                        found.add(str(kw.value.value))
    return found


def test_the_types_the_workflows_rely_on_keep_their_names() -> None:
    assert {name: getattr(ErrorType, name) for name in RELIED_ON_BY_WORKFLOWS} == RELIED_ON_BY_WORKFLOWS


def test_the_registry_is_what_the_workflows_match_on_and_the_activities_raise() -> None:
    matched = _types_named_in("workflows")
    raised = _types_named_in("activities", skip="errors.py") | _mapped_types()
    assert matched == set(RELIED_ON_BY_WORKFLOWS.values())
    assert matched <= REGISTERED and raised <= REGISTERED
    assert matched | raised == REGISTERED, "a registered type nobody raises or matches on"
    # A type a workflow waits for is raised by an activity, unless the workflow raises it itself.
    raised_by_workflows = {
        ErrorType.NOT_RECEIVED,
        ErrorType.NOT_CANCELLABLE,
        ErrorType.KYC_NOT_AWAITING_DOCUMENTS,
        ErrorType.KYC_NOT_IN_REVIEW,
        ErrorType.KYC_SELF_REVIEW,
        ErrorType.KYC_UNPROVEN,
    }
    assert matched - raised_by_workflows <= raised


def _mapped_types() -> set[str]:
    """The types the one mapping produces, from a sample of each domain error it knows."""
    samples: list[tuple[Exception, bool]] = [
        (OrderRejected("kyc_required", "complete identity checks"), False),
        (RoutingRefused(_refused_record()), False),
        (InsufficientFunds("short"), False),
        (HoldNotActive("spent"), False),
        (OwnerFinished("withdrawal x", "COMPLETED"), False),
        (EmailDeliveryError("SendGrid answered 500"), False),
        (CaseRefused("the case is closed"), False),
        (RetryableVenueError("binance", "busy"), False),
        (AmbiguousPlacement("binance", "cid", "timeout"), True),
        (InsufficientVenueFunds("binance", "no BTC"), True),
        (RetryableVenueError("binance", "maintenance"), True),
    ]
    out = set()
    for error, placing in samples:
        mapped = to_application_error(error, placing=placing)
        assert mapped is not None, error
        out.add(str(mapped.type))
    return out


def _refused_record() -> BestExecutionRecord:
    return BestExecutionRecord(
        symbol="BTC-GBP",
        side=Side.BUY,
        max_slippage=Decimal("0.01"),
        refusal=RefusalReason.NO_LIQUIDITY,
        reason="binance: book too thin",
    )


@pytest.mark.parametrize(
    ("error", "placing", "type_", "non_retryable"),
    [
        (OrderRejected("kyc_required", "complete identity checks"), False, ErrorType.REJECTED, True),
        (InsufficientFunds("available GBP does not cover 10.00"), False, ErrorType.INSUFFICIENT_FUNDS, True),
        (IdempotencyConflict("key reused"), False, ErrorType.LEDGER_REFUSED, True),
        (HoldNotActive("committed"), False, ErrorType.LEDGER_REFUSED, True),
        (OwnerFinished("withdrawal x", None), False, ErrorType.NOT_LIVE, True),
        (EmailDeliveryError("unreachable"), False, ErrorType.EMAIL_DELIVERY, False),
        # Asking a venue: any failure means "could not ask now", retried.
        (InsufficientVenueFunds("binance", "no"), False, ErrorType.VENUE_UNAVAILABLE, False),
        (AmbiguousPlacement("binance", "cid", "timeout"), False, ErrorType.VENUE_UNAVAILABLE, False),
        # Placing: a refusal is final at that venue; an ambiguous answer is never a refusal.
        (InsufficientVenueFunds("binance", "no"), True, ErrorType.VENUE_REFUSED, True),
        (RetryableVenueError("binance", "maintenance"), True, ErrorType.VENUE_UNAVAILABLE, False),
        (AmbiguousPlacement("binance", "cid", "timeout"), True, ErrorType.UNRESOLVED, True),
    ],
)
def test_each_domain_error_crosses_as_its_type(
    error: Exception, placing: bool, type_: str, non_retryable: bool
) -> None:
    with pytest.raises(ApplicationError) as caught, application_errors(placing=placing):
        raise error
    assert caught.value.type == type_
    assert caught.value.non_retryable is non_retryable
    assert caught.value.__cause__ is error  # the detail stays in the cause chain for staff


def test_a_router_refusal_carries_our_words_and_the_record() -> None:
    mapped = to_application_error(RoutingRefused(_refused_record()))
    assert mapped is not None and mapped.type == ErrorType.NO_ROUTE and mapped.non_retryable
    assert mapped.details[0] == RefusalReason.NO_LIQUIDITY.value
    assert mapped.details[1]["symbol"] == "BTC-GBP"


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug"),  # Temporal retries it by the activity's policy
        OrderNotFoundAtVenue("binance", "no such order"),  # while placing: may have sent, retry asks first
        VenueError("binance", "odd"),
        ApplicationError("already mapped", type=ErrorType.UNRESOLVED, non_retryable=True),
    ],
)
def test_an_error_without_an_entry_leaves_as_it_is(error: Exception) -> None:
    with pytest.raises(type(error)) as caught, application_errors(placing=True):
        raise error
    assert caught.value is error


def test_an_unrelated_id_is_not_an_error() -> None:
    assert to_application_error(ValueError(str(uuid.uuid4()))) is None

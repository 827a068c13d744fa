"""The ledger's refusals, and how a database error raised by a ledger function becomes one.

The ledger's SQL functions (migrations 0002, 0008) raise their refusals with their own SQLSTATEs
(`LG001`…`LG008`); `raise_translated` turns those into the typed errors below, so a caller catches
`InsufficientFunds` whether Python or PostgreSQL noticed it first.

Every ledger error is a `services.errors.DomainError`: a stable `code` and the HTTP status the API
answers with (`api/errors.py`, one handler). A refusal the customer can act on is a 4xx; a posting
that does not balance or a reused key is our own bug, a 500 whose detail never reaches the client.
Activities map them to Temporal `ApplicationError`s in `activities/errors.py`.
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy.exc import DBAPIError

from services.errors import DomainError


class LedgerError(DomainError):
    """Base of ledger errors. Each subclass says what the caller should do."""

    default_code = "ledger_error"
    status = 422


class InsufficientFunds(LedgerError):
    """The account's available balance cannot cover the debit or hold. Reject the request."""

    default_code = "insufficient_funds"
    status = 422


class HoldNotActive(LedgerError):
    """The hold was already committed or released. Do not retry; the earlier outcome stands."""

    default_code = "hold_not_active"
    status = 409


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request: a bug in the caller's keying. Investigate."""

    default_code = "idempotency_conflict"
    status = 500


class UnbalancedPosting(LedgerError):
    """The legs do not sum to zero per currency, or there are fewer than two. A caller bug."""

    default_code = "unbalanced_posting"
    status = 500


class UnknownAccount(LedgerError):
    """No such account or hold. Reject the request."""

    default_code = "unknown_account"
    status = 404


class CurrencyMismatch(LedgerError):
    """A leg's currency differs from its account's, or the currency is unknown. Reject the request."""

    default_code = "currency_mismatch"
    status = 422


class InvalidAmount(LedgerError):
    """Zero, negative where a positive is needed, or finer than the currency's scale. Reject it."""

    default_code = "invalid_amount"
    status = 422


_SQLSTATE_ERRORS: dict[str, type[LedgerError]] = {
    "LG001": InsufficientFunds,
    "LG002": HoldNotActive,
    "LG003": IdempotencyConflict,
    "LG004": UnbalancedPosting,
    "LG005": UnknownAccount,
    "LG006": CurrencyMismatch,
    "LG007": InvalidAmount,
    "LG008": InvalidAmount,
    "23514": InsufficientFunds,  # a balance CHECK constraint: the last line of defence
}


def ledger_error(e: BaseException) -> LedgerError | None:
    """The ledger error a database error stands for (by SQLSTATE), or None if it stands for none."""
    driver_error = e.orig if isinstance(e, DBAPIError) else e
    cls = _SQLSTATE_ERRORS.get(getattr(driver_error, "sqlstate", None) or "")
    if cls is None:
        return None
    diag = getattr(driver_error, "diag", None)
    return cls(getattr(diag, "message_primary", None) or str(driver_error))


def raise_translated(e: BaseException) -> NoReturn:
    """Raise the ledger error `e` stands for, caused by `e`; any other error is re-raised as it is.

    Never `raise e from e`: an exception that is its own cause makes every walker of the cause
    chain (Temporal's failure converter, for one) recurse until RecursionError, and the real
    message never reaches the workflow's history.
    """
    translated = ledger_error(e)
    if translated is None:
        raise e
    raise translated from e

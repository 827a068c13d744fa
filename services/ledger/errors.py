"""The ledger's refusals, and how a database error raised by a ledger function becomes one.

The ledger's SQL functions (migrations 0002, 0008) raise their refusals with their own SQLSTATEs
(`LG001`…`LG008`); `raise_translated` turns those into the typed errors below, so a caller catches
`InsufficientFunds` whether Python or PostgreSQL noticed it first.
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy.exc import DBAPIError


class LedgerError(Exception):
    """Base of ledger errors. Each subclass says what the caller should do."""

    code = "ledger_error"


class InsufficientFunds(LedgerError):
    """The account's available balance cannot cover the debit or hold. Reject the request."""

    code = "insufficient_funds"


class HoldNotActive(LedgerError):
    """The hold was already committed or released. Do not retry; the earlier outcome stands."""

    code = "hold_not_active"


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request: a bug in the caller's keying. Investigate."""

    code = "idempotency_conflict"


class UnbalancedPosting(LedgerError):
    """The legs do not sum to zero per currency, or there are fewer than two. A caller bug."""

    code = "unbalanced_posting"


class UnknownAccount(LedgerError):
    """No such account or hold. Reject the request."""

    code = "unknown_account"


class CurrencyMismatch(LedgerError):
    """A leg's currency differs from its account's, or the currency is unknown. Reject the request."""

    code = "currency_mismatch"


class InvalidAmount(LedgerError):
    """Zero, negative where a positive is needed, or finer than the currency's scale. Reject it."""

    code = "invalid_amount"


class InvalidCursor(LedgerError):
    """The pagination cursor is not one we issued. Start again without a cursor."""

    code = "invalid_cursor"


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

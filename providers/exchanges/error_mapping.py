"""One mapping from ccxt's exception tree (and the venue's own code or text in it) onto our three kinds.

Most specific first, as freqtrade's exchange wrapper does: credentials, funds, a stale clock or nonce,
maintenance, rate limits, "no such order", a bad request; then "never sent" (no connection was made),
then the unknown outcomes. What a venue says in its own words (Binance's numeric codes, Kraken's
"EOrder:..." strings) comes from the venue's `VenueTraits` (providers/exchanges/ccxt_adapter.py); the
order of the checks is the same for every venue.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import aiohttp
from ccxt.base import errors as ccxt_errors

from providers.exchanges.base import (
    AmbiguousPlacement,
    InsufficientVenueFunds,
    InvalidVenueOrder,
    OrderNotFoundAtVenue,
    RetryableVenueError,
    TerminalVenueError,
    VenueAuthError,
    VenueError,
)


@dataclass(frozen=True, slots=True)
class VenueErrorWords:
    """How a venue says what ccxt's class may not: its codes and the text of its answers.

    `codes`: a code the venue puts in an error body, by meaning (auth, stale clock, unknown outcome).
    `markers`: substrings of the venue's error text, by meaning. Empty for a venue we know nothing of:
    ccxt's own exception classes then decide alone."""

    auth_codes: frozenset[str] = frozenset()
    stale_clock_codes: frozenset[str] = frozenset()
    # "Execution status unknown" in the venue's words: ambiguous while placing.
    unknown_outcome_codes: frozenset[str] = frozenset()
    auth_markers: tuple[str, ...] = ()
    # Explicit "we did not process this" answers: safe to retry even while placing.
    maintenance_markers: tuple[str, ...] = ()
    insufficient_markers: tuple[str, ...] = ()
    not_found_markers: tuple[str, ...] = ()


def never_sent(e: BaseException) -> bool:
    """True only when the error's causes prove the request never left us: the connection itself could
    not be made (refused, unreachable, DNS). A dropped connection, a timeout or a 5xx proves nothing."""
    seen: set[int] = set()
    cause: BaseException | None = e
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror):
            return True
        seen.add(id(cause))
        cause = cause.__cause__
    return False


def map_ccxt_error(
    e: ccxt_errors.BaseError,
    *,
    venue: str,
    words: VenueErrorWords,
    code: str | None = None,
    placing: bool = False,
    cid: str | None = None,
) -> VenueError:
    """ccxt's exception from `venue` (with the venue's `code`, if it gave one) as one of our kinds.

    `placing`: the request was an order (or a withdrawal) being sent, so an unknown outcome is
    `AmbiguousPlacement` (resolve by `cid`, never resend) rather than retryable."""
    msg = str(e)
    if (
        code in words.auth_codes
        or any(m in msg for m in words.auth_markers)
        or isinstance(e, ccxt_errors.AuthenticationError)
    ):
        return VenueAuthError(venue, msg)
    if isinstance(e, ccxt_errors.InsufficientFunds) or any(m in msg for m in words.insufficient_markers):
        return InsufficientVenueFunds(venue, msg)
    if code in words.stale_clock_codes or isinstance(e, ccxt_errors.InvalidNonce):
        # Clock skew or a stale nonce: rejected before processing; retry with a fresh one.
        return RetryableVenueError(venue, msg)
    if isinstance(e, ccxt_errors.OnMaintenance) or any(m in msg for m in words.maintenance_markers):
        return RetryableVenueError(venue, msg)
    if isinstance(e, ccxt_errors.DDoSProtection | ccxt_errors.RateLimitExceeded):
        return RetryableVenueError(venue, msg)
    if isinstance(e, ccxt_errors.OrderNotFound) or any(m in msg for m in words.not_found_markers):
        return OrderNotFoundAtVenue(venue, msg)
    if isinstance(e, ccxt_errors.BadSymbol | ccxt_errors.InvalidOrder | ccxt_errors.BadRequest):
        return InvalidVenueOrder(venue, msg)
    if never_sent(e):
        # No connection was made, so the venue cannot have the order: another venue may take it.
        return RetryableVenueError(venue, f"not sent: {msg}")
    unknown_outcome = code in words.unknown_outcome_codes or isinstance(
        e, ccxt_errors.NetworkError | ccxt_errors.OperationFailed
    )
    if unknown_outcome:
        if placing:
            return AmbiguousPlacement(venue, cid or "", msg)
        return RetryableVenueError(venue, msg)
    if isinstance(e, ccxt_errors.ExchangeError):
        return TerminalVenueError(venue, msg)
    return RetryableVenueError(venue, msg)

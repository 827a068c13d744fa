"""The execution-adapter interface (docs/architecture.md §C.2) and the error kinds every adapter maps to.

Three kinds of failure, because each needs a different reaction from the saga:
- `RetryableVenueError`: nothing happened at the venue (network down before sending, rate limit,
  maintenance). Retry later or fall back to another venue.
- `TerminalVenueError`: the venue refused (insufficient funds, invalid order, bad credentials).
  Retrying the same request cannot help; compensate.
- `AmbiguousPlacement`: an order request was sent and we do not know whether the venue accepted it
  (timeout, 5xx after sending). Never resend blindly: resolve by looking the order up by its
  client order id (`ExecutionAdapter.resolve_placement`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from models.market import (
    DepositAddress,
    FeeSchedule,
    MarketRules,
    OrderBook,
    PlaceOrderRequest,
    VenueBalance,
    VenueDeposit,
    VenueOrder,
    VenueWithdrawal,
)


def client_order_id(order_id: uuid.UUID | str, attempt: int) -> str:
    """The id we send with attempt `attempt` of our order `order_id`: 32 lowercase hex characters.

    The first 24 are the order's UUID (so ops can find it at the venue), the last 8 the attempt.
    32 hex characters are valid everywhere we trade: Binance's `newClientOrderId` (<= 36 of
    `[A-Za-z0-9_-]`) and Kraken's `cl_ord_id` ("short UUID" form). Pure, so a worker that restarts
    recomputes the very id it sent before.
    """
    u = order_id if isinstance(order_id, uuid.UUID) else uuid.UUID(str(order_id))
    if not 0 <= attempt <= 0xFFFFFFFF:
        raise ValueError(f"attempt out of range: {attempt}")
    return f"{u.hex[:24]}{attempt:08x}"


class VenueError(Exception):
    """Base of all adapter errors. `provider` names the venue."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider


class RetryableVenueError(VenueError):
    """Transient: the request did not take effect. Retry with back-off, or use another venue."""


class TerminalVenueError(VenueError):
    """The venue refused the request. Do not retry it; compensate (release holds) instead."""


class InsufficientVenueFunds(TerminalVenueError):
    """Our omnibus balance at the venue cannot cover the order or withdrawal."""


class InvalidVenueOrder(TerminalVenueError):
    """The order breaks the venue's rules (size, price, symbol)."""


class VenueAuthError(TerminalVenueError):
    """Bad keys or signature: page ops; nothing will work until it is fixed."""


class AmbiguousPlacement(VenueError):
    """The order may or may not exist at the venue. Resolve by client order id; never resend blindly."""

    def __init__(self, provider: str, client_order_id: str, message: str) -> None:
        super().__init__(provider, message)
        self.client_order_id = client_order_id


class UnsupportedByVenue(VenueError):
    """The venue has no such operation (e.g. minting a new deposit address at Binance). Not a refusal of
    this request: asking again, or elsewhere at the same venue, cannot help; use another venue."""


class OrderNotFoundAtVenue(VenueError):
    """The venue does not know this order (yet: venues lag, so one answer is not proof)."""


@runtime_checkable
class ExecutionAdapter(Protocol):
    """One liquidity provider. Implementations: `providers.exchanges.ccxt_adapter.CcxtAdapter` (exchanges)
    and `providers.exchanges.otc_adapter.OtcAdapter` (the OTC desk)."""

    name: str

    async def load(self) -> None:
        """Load markets (rules, precision) once; call again to refresh."""

    def rules(self, symbol: str) -> MarketRules: ...

    def fees(self, symbol: str) -> FeeSchedule: ...

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook: ...

    async def place_order(self, request: PlaceOrderRequest) -> VenueOrder: ...

    async def resolve_placement(
        self, symbol: str, client_order_id: str, *, attempts: int | None = None
    ) -> VenueOrder | None:
        """After `AmbiguousPlacement`: the order if the venue has it, None once it is proven absent.
        `attempts` (default: the adapter's own) bounds the lookups made in this one call."""
        ...

    async def find_in_trades(self, symbol: str, client_order_id: str, since: datetime) -> VenueOrder | None:
        """Our order found through the venue's own trade history since `since` (a second witness to
        `resolve_placement`); None when no trade since then belongs to it."""
        ...

    async def cancel_order(self, symbol: str, provider_order_id: str) -> VenueOrder: ...

    async def order_status(self, symbol: str, provider_order_id: str) -> VenueOrder: ...

    async def balance(self, currency: str) -> VenueBalance: ...

    async def deposit_address(self, currency: str, new: bool = False) -> DepositAddress:
        """Our deposit address for `currency`; `new` asks the venue to mint a fresh one (one per customer).
        A venue that cannot mint raises `VenueError`."""
        ...

    async def deposits(self, currency: str | None = None) -> list[VenueDeposit]: ...

    async def withdrawal_status(
        self,
        currency: str,
        client_id: str,
        since: datetime | None = None,
        venue_ref: str | None = None,
    ) -> VenueWithdrawal | None:
        """Our withdrawal by our client id, or, where the venue keeps none (Kraken), by `venue_ref` (the
        venue's reference from the send's answer), searched through the venue's whole history from
        `since` (every page); None if the venue shows no record of it (which is not proof: venues lag).
        `UnsupportedByVenue` where neither can name it (no client id kept and no reference known)."""
        ...

    async def withdraw(
        self, currency: str, amount: Decimal, address: str, client_id: str, tag: str | None = None
    ) -> VenueWithdrawal: ...

    async def close(self) -> None: ...

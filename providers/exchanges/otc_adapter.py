"""`OtcAdapter`: the OTC desk behind the same `ExecutionAdapter` interface, over its RFQ protocol (httpx).

A desk has no public book: it quotes one price for a whole size, valid for a short time. So:
- `quote()` is the native call (request for quote, with its expiry);
- `order_book()` synthesises one deep level per side from an RFQ of a reference size, so the router can
  compare the desk with the exchanges the same way;
- `place_order()` asks for a quote for exactly the amount, checks it against the protective price,
  accepts it with our client order id (idempotent at the desk) and settles it. A timeout or 5xx during
  the accept is `AmbiguousPlacement`; `resolve_placement` finds the trade by client id.
- Custody (deposit addresses, withdrawals) does not exist at a desk: those calls are terminal errors.

The desk's spread is its fee, so `fees()` is zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from pydantic import BaseModel

from models.market import (
    SYMBOLS,
    DepositAddress,
    FeeSchedule,
    MarketRules,
    OrderBook,
    PlaceOrderRequest,
    PriceLevel,
    Side,
    VenueBalance,
    VenueDeposit,
    VenueFill,
    VenueOrder,
    VenueOrderStatus,
    VenueWithdrawal,
    split_symbol,
)
from providers.exchanges.base import (
    AmbiguousPlacement,
    InsufficientVenueFunds,
    InvalidVenueOrder,
    OrderNotFoundAtVenue,
    RetryableVenueError,
    TerminalVenueError,
    UnsupportedByVenue,
    VenueAuthError,
    VenueError,
)

# Reference sizes for the synthesised book: about the OTC threshold (GBP 50k) and above.
DEFAULT_REFERENCE_SIZES: dict[str, Decimal] = {
    "BTC-GBP": Decimal("5"),
    "ETH-GBP": Decimal("100"),
    "BNB-GBP": Decimal("500"),
}


class OtcQuote(BaseModel):
    quote_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal
    quote_amount: Decimal
    expires_at: datetime


class OtcAdapter:
    """`ExecutionAdapter` for the OTC desk."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: str,
        timeout_s: float = 10.0,
        lookup_attempts: int = 4,
        lookup_backoff_s: float = 0.25,
        reference_sizes: Mapping[str, Decimal] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.lookup_attempts = lookup_attempts
        self.lookup_backoff_s = lookup_backoff_s
        self.reference_sizes = dict(reference_sizes or DEFAULT_REFERENCE_SIZES)
        self.client = client or httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers={"X-API-Key": api_key}, timeout=timeout_s
        )

    # ------------------------------------------------------------------ plumbing

    def _error(self, response: httpx.Response, *, placing: bool, cid: str) -> VenueError:
        try:
            body = response.json()
            code = str(body.get("error", ""))
            message = f"{response.status_code} {code}: {body.get('message', '')}"
        except ValueError:
            code, message = "", f"{response.status_code} {response.text[:200]}"
        status = response.status_code
        if status == 401:
            return VenueAuthError(self.name, message)
        if status == 422 and code == "insufficient_balance":
            return InsufficientVenueFunds(self.name, message)
        if status == 404:
            return OrderNotFoundAtVenue(self.name, message)
        if status == 410:  # quote expired: nothing traded, ask again
            return RetryableVenueError(self.name, message)
        if status in (429, 503):
            return RetryableVenueError(self.name, message)
        if status >= 500:
            return (
                AmbiguousPlacement(self.name, cid, message)
                if placing
                else RetryableVenueError(self.name, message)
            )
        return InvalidVenueOrder(self.name, message)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        placing: bool = False,
        cid: str = "",
    ) -> Any:
        try:
            response = await self.client.request(method, path, json=json, params=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            # No connection was made, so the desk cannot have the request (placing or not).
            raise RetryableVenueError(self.name, f"not sent: {type(e).__name__}: {e}") from e
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as e:
            if placing:
                raise AmbiguousPlacement(self.name, cid, f"{type(e).__name__}: {e}") from e
            raise RetryableVenueError(self.name, f"{type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            raise self._error(response, placing=placing, cid=cid)
        return response.json()

    # ------------------------------------------------------------------ interface

    async def load(self) -> None:
        """Nothing to load: a desk publishes no markets. Checks the key works."""
        await self._call("GET", "/v1/balances")

    def rules(self, symbol: str) -> MarketRules:
        if symbol not in SYMBOLS:
            raise InvalidVenueOrder(self.name, f"the desk does not trade {symbol}")
        step = Decimal("0.1") if symbol == "BNB-GBP" else Decimal("0.01")
        amount_step = Decimal("0.001") if symbol == "BNB-GBP" else Decimal("0.0001")
        return MarketRules(symbol=symbol, amount_step=amount_step, price_step=step)

    def fees(self, symbol: str) -> FeeSchedule:
        return FeeSchedule(taker=Decimal(0), maker=Decimal(0))

    async def quote(self, symbol: str, side: Side, amount: Decimal) -> OtcQuote:
        body = await self._call(
            "POST", "/v1/quotes", json={"symbol": symbol, "side": side.value.lower(), "amount": str(amount)}
        )
        return OtcQuote(
            quote_id=body["quote_id"],
            symbol=body["symbol"],
            side=Side(body["side"].upper()),
            amount=Decimal(body["amount"]),
            price=Decimal(body["price"]),
            quote_amount=Decimal(body["quote_amount"]),
            expires_at=datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00")),
        )

    async def order_book(self, symbol: str, depth: int = 50) -> OrderBook:
        size = self.reference_sizes.get(symbol)
        if size is None:
            raise InvalidVenueOrder(self.name, f"no reference size for {symbol}")
        buy, sell = await asyncio.gather(
            self.quote(symbol, Side.BUY, size), self.quote(symbol, Side.SELL, size)
        )
        return OrderBook(
            provider=self.name,
            symbol=symbol,
            bids=[PriceLevel(price=sell.price, amount=size)],
            asks=[PriceLevel(price=buy.price, amount=size)],
            timestamp=datetime.now(tz=UTC),
        )

    def _order(self, trade: dict[str, Any]) -> VenueOrder:
        amount, price = Decimal(trade["amount"]), Decimal(trade["price"])
        quote_amount = Decimal(trade["quote_amount"])
        _, quote_ccy = split_symbol(trade["symbol"])
        settled = trade["status"] == "settled"
        return VenueOrder(
            provider=self.name,
            provider_order_id=trade["trade_id"],
            client_order_id=trade["client_id"],
            symbol=trade["symbol"],
            side=Side(trade["side"].upper()),
            # Accepted is binding: the price and size are fixed, only settlement is outstanding.
            status=VenueOrderStatus.FILLED,
            amount=amount,
            filled=amount,
            quote_filled=quote_amount,
            average_price=price,
            fee=Decimal(0),
            fee_currency=quote_ccy,
            fills=[
                VenueFill(
                    trade_id=trade["trade_id"],
                    price=price,
                    amount=amount,
                    fee=Decimal(0),
                    fee_currency=quote_ccy,
                )
            ],  # fmt: skip
            raw={**trade, "settled": settled},
        )

    async def place_order(self, request: PlaceOrderRequest) -> VenueOrder:
        """RFQ for the exact amount, accept if within the protective price, settle."""
        q = await self.quote(request.symbol, request.side, request.amount)
        if request.price is not None:
            worse = q.price > request.price if request.side is Side.BUY else q.price < request.price
            if worse:
                raise InvalidVenueOrder(
                    self.name, f"desk price {q.price} is beyond the limit {request.price}"
                )
        cid = request.client_order_id
        trade = await self._call(
            "POST", f"/v1/quotes/{q.quote_id}/accept", json={"client_id": cid}, placing=True, cid=cid
        )
        trade = await self._settle(trade)
        return self._order(trade)

    async def _settle(self, trade: dict[str, Any]) -> dict[str, Any]:
        if trade["status"] == "settled":
            return trade
        settled: dict[str, Any] = await self._call("POST", f"/v1/trades/{trade['trade_id']}/settle")
        return settled

    async def resolve_placement(
        self, symbol: str, client_order_id: str, *, attempts: int | None = None
    ) -> VenueOrder | None:
        delay = self.lookup_backoff_s
        tries = attempts or self.lookup_attempts
        for attempt in range(tries):
            body = await self._call("GET", "/v1/trades", params={"client_id": client_order_id})
            trades = body.get("trades", [])
            if trades:
                return self._order(await self._settle(trades[0]))
            if attempt < tries - 1:
                await asyncio.sleep(delay)
                delay *= 2
        return None

    async def find_in_trades(self, symbol: str, client_order_id: str, since: datetime) -> VenueOrder | None:
        """The desk's trade blotter is its order record too: one more look at it by our client id."""
        body = await self._call("GET", "/v1/trades", params={"client_id": client_order_id})
        trades = body.get("trades", [])
        return self._order(await self._settle(trades[0])) if trades else None

    async def cancel_order(self, symbol: str, provider_order_id: str) -> VenueOrder:
        """An accepted OTC trade is binding: there is nothing to cancel, so this returns its state."""
        return await self.order_status(symbol, provider_order_id)

    async def order_status(self, symbol: str, provider_order_id: str) -> VenueOrder:
        return self._order(await self._call("GET", f"/v1/trades/{provider_order_id}"))

    async def balance(self, currency: str) -> VenueBalance:
        body = await self._call("GET", "/v1/balances")
        total = Decimal(body.get(currency, "0"))
        return VenueBalance(currency=currency, free=total, used=Decimal(0), total=total)

    async def deposit_address(self, currency: str, new: bool = False) -> DepositAddress:
        raise TerminalVenueError(self.name, "the OTC desk holds no deposit addresses")

    async def deposits(self, currency: str | None = None) -> list[VenueDeposit]:
        return []

    async def withdrawal_status(
        self, currency: str, client_id: str, since: datetime | None = None, venue_ref: str | None = None
    ) -> VenueWithdrawal | None:
        raise UnsupportedByVenue(self.name, "the OTC desk does not withdraw to addresses")

    async def withdraw(
        self, currency: str, amount: Decimal, address: str, client_id: str, tag: str | None = None
    ) -> VenueWithdrawal:
        raise TerminalVenueError(self.name, "the OTC desk does not withdraw to addresses")

    async def close(self) -> None:
        await self.client.aclose()

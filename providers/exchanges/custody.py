"""Custody over a ccxt exchange: balances, deposit addresses, deposits and withdrawals.

The custody half of `CcxtAdapter` (providers/exchanges/ccxt_adapter.py), its base class; the trading
half (markets, books, orders) is there. A withdrawal is sent once; a send whose answer is lost is an
unknown outcome, looked up again by our id (or the venue's reference) and never sent twice. How a venue
names our withdrawals is its `WithdrawalCapabilities`; the lookups themselves are in each venue's class.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from models.market import DepositAddress, VenueBalance, VenueDeposit, VenueWithdrawal
from providers.exchanges import parsing
from providers.exchanges.base import UnsupportedByVenue
from providers.exchanges.parsing import dec
from providers.exchanges.venue_config import VenueTraits, WithdrawalCapabilities

log = logging.getLogger("broker.venues")

# Withdrawal history: Binance's largest page, a bound on how many we read, and how far before the request
# the search starts (clocks differ; the venue stamps its own apply time).
WITHDRAWAL_HISTORY_PAGE = 1000
WITHDRAWAL_HISTORY_MAX_PAGES = 100
WITHDRAWAL_LOOKBACK = timedelta(days=1)


class CcxtCustody:
    """Balances, deposits and withdrawals at one venue (the base of `CcxtAdapter`)."""

    name: str
    exchange: Any
    traits: ClassVar[VenueTraits]

    if TYPE_CHECKING:  # provided by CcxtAdapter

        async def _ensure_loaded(self) -> None: ...

        def _errors(
            self, *, placing: bool = False, cid: str | None = None
        ) -> contextlib.AbstractAsyncContextManager[None]: ...

    async def balance(self, currency: str) -> VenueBalance:
        return (await self.balances([currency]))[currency]

    async def balances(self, currencies: Iterable[str]) -> dict[str, VenueBalance]:
        """Several currencies from one balance read: one snapshot of the account, one request."""
        await self._ensure_loaded()
        async with self._errors():
            raw = await self.exchange.fetch_balance()
        out = {}
        for currency in currencies:
            entry = raw.get(currency) or {}
            free, used, total = dec(entry.get("free")), dec(entry.get("used")), dec(entry.get("total"))
            if not entry.get("total") and (free or used):
                total = free + used
            out[currency] = VenueBalance(currency=currency, free=free, used=used, total=total)
        return out

    async def deposit_address(self, currency: str, new: bool = False) -> DepositAddress:
        """Our deposit address for `currency`. With `new`, a freshly minted one (Kraken's `DepositAddresses`
        with `new=true`, through ccxt's `create_deposit_address`): every customer gets their own, so a
        deposit is attributed by the address it arrived at. Binance has one address per coin per account,
        so asking it for a new one is `UnsupportedByVenue`, not a silently shared address."""
        await self._ensure_loaded()
        if new and not self.exchange.has.get("createDepositAddress"):
            raise UnsupportedByVenue(self.name, f"cannot mint a new {currency} deposit address at this venue")
        async with self._errors():
            if new:
                raw = await self.exchange.create_deposit_address(currency)
            else:
                raw = await self.exchange.fetch_deposit_address(currency)
        return DepositAddress(
            currency=currency,
            address=str(raw["address"]),
            tag=raw.get("tag") or None,
            network=raw.get("network"),
        )

    async def deposits(self, currency: str | None = None) -> list[VenueDeposit]:
        await self._ensure_loaded()
        async with self._errors():
            rows = await self.exchange.fetch_deposits(currency)
        out = []
        for row in rows:
            try:
                out.append(parsing.deposit(self.name, row, currency))
            except (ValueError, TypeError, ArithmeticError) as e:
                # One record we cannot read must not hide the others; it is reported on every poll.
                log.error(
                    "deposit record unreadable: venue=%s ref=%s tx=%s (%s)",
                    self.name, row.get("id"), row.get("txid"), type(e).__name__,
                )  # fmt: skip
        return out

    @property
    def withdrawals(self) -> WithdrawalCapabilities:
        """How this venue names our withdrawals (see `WithdrawalCapabilities`)."""
        return self.traits.withdrawals

    async def withdraw(
        self, currency: str, amount: Decimal, address: str, client_id: str, tag: str | None = None
    ) -> VenueWithdrawal:
        """Send `amount` to `address`. A timeout is ambiguous (the transfer may exist): check, don't resend.

        Binance takes our id as `withdrawOrderId`. Kraken withdraws to a pre-registered *key*: ops
        register each destination with the address itself as the key name; its answer is the
        withdrawal's `refid` (`withdrawal_id` here), the only name it can be looked up by later.
        """
        await self._ensure_loaded()
        params: dict[str, Any] = {}
        if tag:
            params["tag"] = tag
        if self.withdrawals.client_id_param:
            params[self.withdrawals.client_id_param] = client_id
        if self.traits.withdraws_to_key:
            params["key"] = address
        async with self._errors(placing=True, cid=client_id):
            raw = await self.exchange.withdraw(currency, str(amount), address, params)
        return VenueWithdrawal(
            provider=self.name,
            withdrawal_id=str(raw.get("id") or ""),  # Binance's id; Kraken's `refid`
            currency=currency,
            amount=amount,
            address=address,
            status=str(raw.get("status") or "pending"),
            tx_hash=raw.get("txid"),
        )

    async def withdrawal_status(
        self,
        currency: str,
        client_id: str,
        since: datetime | None = None,
        venue_ref: str | None = None,
    ) -> VenueWithdrawal | None:
        """Our withdrawal as the venue records it; None if it has no such record.

        By our client id where the venue keeps it (Binance), else by the venue's own reference from the
        send's answer (Kraken's `refid`); without that reference (the answer was lost) it cannot be
        asked: `UnsupportedByVenue`, and the outcome stays unknown. The history is read page by page
        from a day before `since`, and each row is matched on the id again, so a venue that ignored a
        filter still cannot make an older withdrawal look missing. None is not proof of absence (venues
        lag); the caller asks again over time. Network errors are retryable.
        """
        await self._ensure_loaded()
        start_ms = int((since - WITHDRAWAL_LOOKBACK).timestamp() * 1000) if since else None
        if self.withdrawals.lookup_by == "venue_ref":
            if not venue_ref:
                raise UnsupportedByVenue(
                    self.name, "cannot look a withdrawal up without its reference (the send's answer)"
                )
            return await self._withdrawal_by_ref(currency, venue_ref, start_ms)
        return await self._withdrawal_by_client_id(currency, client_id, start_ms)

    async def _withdrawal_by_ref(
        self, currency: str, venue_ref: str, start_ms: int | None
    ) -> VenueWithdrawal | None:
        raise UnsupportedByVenue(self.name, "cannot look a withdrawal up by reference at this venue")

    async def _withdrawal_by_client_id(
        self, currency: str, client_id: str, start_ms: int | None
    ) -> VenueWithdrawal | None:
        raise UnsupportedByVenue(self.name, "cannot look a withdrawal up by our id at this venue")

    async def withdrawal_by_id(self, currency: str, withdrawal_id: str) -> VenueWithdrawal | None:
        """Our withdrawal by the venue's own id (from `withdraw`'s answer): its status, chain tx and the
        network fee taken. None if the history does not show it (yet: venues lag; ask again)."""
        await self._ensure_loaded()
        async with self._errors():
            rows = await self.exchange.fetch_withdrawals(currency)
        for row in rows:
            if str(row.get("id")) != withdrawal_id:
                continue
            info = row.get("info") or {}
            fee = info.get("transactionFee", info.get("fee"))
            return VenueWithdrawal(
                provider=self.name,
                withdrawal_id=withdrawal_id,
                currency=str(row.get("currency") or currency),
                amount=dec(info.get("amount", row.get("amount"))),
                address=str(row.get("address") or info.get("address") or info.get("info") or ""),
                status=str(row.get("status") or "pending"),
                tx_hash=row.get("txid") or info.get("txid") or None,
                fee=dec(fee) if fee not in (None, "") else None,
            )
        return None

"""The API's clients of the outside world for payments (the bank, the venues' adapters, the mail
sender), built once in the app's lifespan and closed at shutdown; routes get them as `PaymentsDep`.

They also translate the outside parties' failures into the domain's refusals (a bank or venue that
cannot answer is a 503 the customer retries), so services and routes never see a provider's exception.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Request

from config import Settings
from providers import email as templates
from providers.bank import BankClient, BankError
from providers.email import EmailDeliveryError, EmailSender
from providers.exchanges.base import ExecutionAdapter, UnsupportedByVenue, VenueError
from services.payments import (
    BankDetails,
    ConfirmedBankAccount,
    DepositInstructionsUnavailable,
    IssuedAddress,
)

log = logging.getLogger("broker.payments")


class PaymentsClients:
    """The bank client and the venue adapters of this API process. Adapters passed in (tests, or the
    set the app was built with) belong to the caller and are not closed here."""

    def __init__(
        self,
        settings: Settings,
        *,
        email: EmailSender,
        adapters: Mapping[str, ExecutionAdapter] | None = None,
    ) -> None:
        from providers.exchanges.ccxt_adapter import build_adapters

        self.settings = settings
        self.email = email
        self.bank = BankClient.from_settings(settings)
        self._owned = adapters is None
        self.adapters: dict[str, ExecutionAdapter] = (
            dict(adapters) if adapters is not None else build_adapters(settings)
        )

    async def close(self) -> None:
        await self.bank.close()
        if self._owned:
            for adapter in self.adapters.values():
                await adapter.close()

    def _adapter(self, provider: str) -> ExecutionAdapter:
        adapter = self.adapters.get(provider)
        if adapter is None:
            raise DepositInstructionsUnavailable(
                "provider_unavailable", "the crypto provider is not configured"
            )
        return adapter

    # --- services.payments.DepositAccounts ------------------------------------------------------

    async def bank_reference(self, *, user_id: uuid.UUID, email: str) -> BankDetails:
        try:
            ref = await self.bank.customer_reference(str(user_id), email)
        except BankError as e:
            raise DepositInstructionsUnavailable(
                "bank_unavailable", "the bank is unavailable; try again"
            ) from e
        return BankDetails(ref.reference, ref.sort_code, ref.account_number, ref.account_name)

    async def new_deposit_address(self, *, provider: str, currency: str) -> IssuedAddress:
        try:
            given = await self._adapter(provider).deposit_address(currency, new=True)
        except UnsupportedByVenue as e:
            raise DepositInstructionsUnavailable(
                "deposit_address_unavailable", f"{provider} cannot give each customer their own address"
            ) from e
        except VenueError as e:
            raise DepositInstructionsUnavailable(
                "provider_unavailable", "the provider is unavailable; try again"
            ) from e
        return IssuedAddress(address=given.address, tag=given.tag or None)

    # --- services.payments.GbpPrices ------------------------------------------------------------

    async def gbp_price(self, currency: str) -> Decimal | None:
        """The provider's best ask for `currency` in GBP (the higher side of the book, so the limit check
        never undervalues what leaves); None when no price can be had."""
        try:
            book = await self._adapter(self.settings.crypto_provider).order_book(f"{currency}-GBP", depth=1)
        except (VenueError, DepositInstructionsUnavailable):
            return None
        return book.asks[0].price if book.asks else None

    # --- mail -----------------------------------------------------------------------------------

    async def tell_bank_account_confirmed(self, to: str, confirmed: ConfirmedBankAccount) -> None:
        """The confirmation stands whether or not this mail goes out; a failure is logged, not retried."""
        message = templates.bank_account_confirmed(
            account_ending=confirmed.account_number[-4:], usable_from=confirmed.usable_from
        )
        try:
            await self.email.send(to, message)
        except EmailDeliveryError:
            log.error(
                json.dumps({"event": "bank_account.confirm_email_failed", "bank_account": str(confirmed.id)})
            )


async def payments_clients(request: Request) -> PaymentsClients:
    clients: PaymentsClients = request.app.state.payments
    return clients


PaymentsDep = Annotated[PaymentsClients, Depends(payments_clients)]

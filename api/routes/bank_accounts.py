"""Where a customer's withdrawals may go: whitelisted crypto addresses and confirmed bank accounts."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter

from api.auth_deps import RequireTotp, problem_responses
from api.deps import EngineDep, SettingsDep
from api.routes.accounts import Customer
from models.payments_api import AddressCreate, AddressOut, BankAccountOut
from services import payments

router = APIRouter(tags=["payments"])


@router.post(
    "/withdrawal-addresses",
    status_code=201,
    response_model=AddressOut,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 422),
)
async def add_withdrawal_address(body: AddressCreate, user: Customer, engine: EngineDep) -> AddressOut:
    """Whitelist a crypto address (needs `X-TOTP-Code`); usable 24 h after it is added."""
    return await payments.whitelist_address(
        engine, user_id=user.id, currency=body.currency, address=body.address, tag=body.tag, label=body.label
    )


@router.get("/withdrawal-addresses", response_model=list[AddressOut], responses=problem_responses(401, 403))
async def list_withdrawal_addresses(user: Customer, engine: EngineDep) -> list[AddressOut]:
    """Your whitelisted addresses."""
    return await payments.list_addresses(engine, user_id=user.id)


@router.delete(
    "/withdrawal-addresses/{address_id}", status_code=204, responses=problem_responses(401, 403, 404)
)
async def remove_withdrawal_address(address_id: uuid.UUID, user: Customer, engine: EngineDep) -> None:
    """Remove one of your whitelisted addresses."""
    await payments.unlist_address(engine, user_id=user.id, address_id=address_id)


@router.get("/bank-accounts", response_model=list[BankAccountOut], responses=problem_responses(401, 403))
async def list_bank_accounts(user: Customer, engine: EngineDep) -> list[BankAccountOut]:
    """Your bank accounts. One you paid in from becomes a GBP withdrawal destination once you confirm it
    (if its holder name matches yours) and its cooling-off period has passed."""
    return await payments.list_bank_accounts(engine, user_id=user.id)


@router.post(
    "/bank-accounts/{account_id}/confirm",
    response_model=BankAccountOut,
    dependencies=[RequireTotp],
    responses=problem_responses(401, 403, 404, 409, 422, 429),
)
async def confirm_bank_account(
    account_id: uuid.UUID, user: Customer, engine: EngineDep, settings: SettingsDep
) -> BankAccountOut:
    """Confirm that an account you paid in from is yours (needs `X-TOTP-Code`): it can receive GBP
    withdrawals after the cooling-off period, and we email you. An account whose holder name does not
    match yours is reviewed by our team instead (409)."""

    async def tell_customer(confirmed: payments.ConfirmedBankAccount) -> None:
        """Nothing more to do: the notification was written with the confirmation (the outbox)."""

    return await payments.confirm_for_customer(
        engine, user_id=user.id, account_id=account_id,
        cooling_off=timedelta(seconds=settings.bank_account_cooling_off_seconds), notify=tell_customer,
    )  # fmt: skip

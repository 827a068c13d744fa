"""Request and response bodies of the payments API (deposits, withdrawals, addresses, bank accounts,
the bank's webhook) and of the staff endpoints over them.

Money travels as a string at the currency's scale (`models.money.money`), never a JSON number;
incoming amounts are `DecimalStr`, so a JSON number is a 422.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from models.api import DecimalStr

# --- the bank's webhook -------------------------------------------------------------------------


class WebhookAck(BaseModel):
    status: str
    workflow_id: str | None = None


# --- deposits -----------------------------------------------------------------------------------


class DepositInstructions(BaseModel):
    currency: str
    # GBP: pay by Faster Payments to this account with this reference.
    reference: str | None = None
    sort_code: str | None = None
    account_number: str | None = None
    account_name: str | None = None
    # Crypto: send to this address at the provider.
    address: str | None = None
    tag: str | None = None
    network: str | None = None
    confirmations_required: int | None = None


class DepositOut(BaseModel):
    id: uuid.UUID
    currency: str
    amount: str
    status: str
    payment_method: str | None
    reference: str | None
    created_at: datetime
    confirmed_at: datetime | None


class DepositPage(BaseModel):
    deposits: list[DepositOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


# --- withdrawals --------------------------------------------------------------------------------


class TravelRuleIn(BaseModel):
    """UK Travel Rule: who receives a crypto withdrawal of £1,000 or more, and where the wallet is."""

    beneficiary_name: str = Field(
        min_length=1, max_length=140, pattern=r"\S", description="the recipient's full name"
    )
    wallet: Literal["self_hosted", "provider"] = Field(
        description="self_hosted: a wallet the recipient holds the keys of; provider: an account at another "
        "crypto-asset business"
    )
    provider_name: str | None = Field(
        default=None, min_length=1, max_length=140, description="required when wallet is provider"
    )

    @model_validator(mode="after")
    def _provider_named(self) -> TravelRuleIn:
        if self.wallet == "provider" and not (self.provider_name and self.provider_name.strip()):
            raise ValueError("provider_name is required when the wallet is held at a provider")
        if self.wallet == "self_hosted" and self.provider_name is not None:
            raise ValueError("provider_name is only for a wallet held at a provider")
        return self


class WithdrawalCreate(BaseModel):
    currency: str = Field(pattern="^[A-Z]{3,5}$")
    # A string, never a JSON number (a float cannot hold money exactly): `10.5` is a 422.
    amount: DecimalStr = Field(description='as a string at the currency\'s scale, e.g. "500.00"')
    address_id: uuid.UUID | None = Field(default=None, description="a whitelisted address (crypto)")
    bank_account_id: uuid.UUID | None = Field(
        default=None, description="GBP: required, one of your confirmed bank accounts (GET /bank-accounts)"
    )
    travel_rule: TravelRuleIn | None = Field(
        default=None, description="crypto worth £1,000 or more: required (UK Travel Rule); optional below"
    )


class WithdrawalOut(BaseModel):
    id: uuid.UUID
    currency: str
    amount: str
    fee: str
    notional_gbp: str | None
    status: str
    reason: str | None
    destination: str | None
    approvals_required: int
    provider_ref: str | None
    tx_hash: str | None
    created_at: datetime
    completed_at: datetime | None
    workflow_id: str


class WithdrawalPage(BaseModel):
    withdrawals: list[WithdrawalOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


class PendingWithdrawal(WithdrawalOut):
    """A withdrawal in a staff queue: whose it is and who has approved it so far."""

    user_id: uuid.UUID
    approvals: list[uuid.UUID]


# --- whitelist and bank accounts ----------------------------------------------------------------


class AddressCreate(BaseModel):
    currency: str = Field(pattern="^[A-Z]{3,5}$")
    address: str = Field(min_length=10, max_length=128, pattern="^[A-Za-z0-9:]+$")
    tag: str = Field(default="", max_length=64)
    label: str | None = Field(default=None, max_length=100)


class AddressOut(BaseModel):
    id: uuid.UUID
    currency: str
    address: str
    tag: str
    label: str | None
    usable_from: datetime
    created_at: datetime


class BankAccountOut(BaseModel):
    id: uuid.UUID
    holder_name: str
    sort_code: str
    account_number: str
    verified: bool
    status: str = Field(description="UNCONFIRMED, HELD_FOR_REVIEW, CONFIRMED or REJECTED")
    name_match: str | None = Field(description="the holder name against yours: match, close_match, no_match")
    usable_from: datetime | None = Field(description="when a confirmed account can first receive GBP")


# --- staff: decisions, halts, float -------------------------------------------------------------


class DecisionBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class TokenBody(BaseModel):
    action: Literal["approve", "reject"]


class TokenOut(BaseModel):
    token: str
    approver_id: uuid.UUID
    expires_in: int


class ResolveBody(BaseModel):
    paid: bool = Field(description="true: the money reached the destination (complete the books); false: it "
                       "did not (release the hold)")  # fmt: skip
    reason: str = Field(min_length=1, max_length=500)
    provider_ref: str | None = Field(default=None, max_length=100)


class HaltBody(BaseModel):
    reason: str = Field(min_length=1, max_length=500)


class HaltOut(BaseModel):
    currency: str
    reason: str
    halted_by: uuid.UUID | None
    created_at: datetime


class TopUpOut(BaseModel):
    id: uuid.UUID
    provider: str
    currency: str
    balance: str
    threshold: str
    target: str
    amount: str
    status: str
    created_at: datetime

"""The staff's view of one customer (the console's customer screen, `services.customer_view`): every
section as the services that own it show it, plus what only staff see (the vendor's KYC result, the full
best-execution record, sessions and devices, the audit trail, the ledger chain check).

Staff only: a customer never receives this shape. Amounts are strings at their currency's scale.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from models.api import AccountBalance, LedgerEntryOut, OrderOut
from models.kyc import LimitUsage
from models.market import BestExecutionRecord
from models.payments_api import DepositOut, WithdrawalOut


class CustomerHit(BaseModel):
    """One search result."""

    id: uuid.UUID
    email: str
    first_name: str | None
    last_name: str | None
    status: str
    kyc_tier: int
    created_at: datetime | None


class Profile(CustomerHit):
    phone: str | None
    roles: list[str]
    email_verified: bool
    twofa_enabled: bool
    last_login: datetime | None


class KycSubmissionRow(BaseModel):
    """A submission with the vendor's result (staff only: the customer sees our message, not the result)."""

    id: uuid.UUID
    tier: int
    status: str
    vendor_result: dict[str, Any] | None
    created_at: datetime


class OrderRow(BaseModel):
    order: OrderOut
    execution: BestExecutionRecord | None = Field(
        description="the router's stored record, venues' text included (staff only)"
    )


class SessionRow(BaseModel):
    id: uuid.UUID
    ip: str | None
    user_agent: str | None
    created_at: datetime | None
    last_used_at: datetime | None
    expires_at: datetime


class DeviceRow(BaseModel):
    fingerprint: str
    user_agent: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None


class AuditRow(BaseModel):
    id: uuid.UUID
    created_at: datetime | None
    actor_id: uuid.UUID | None
    actor_type: str
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    details: dict[str, Any] | None


class ChainCheck(BaseModel):
    """The ledger's hash-chain verification over the customer's accounts
    (`services.ledger.verify_accounts`)."""

    ok: bool
    accounts_checked: int
    entries_checked: int
    problem: str | None = None  # the first problem, in words, naming the account and entry


class LedgerTrail(BaseModel):
    """The customer's newest ledger entries and the hash-chain check of all their accounts."""

    entries: list[LedgerEntryOut]
    next_cursor: str | None
    chain: ChainCheck


class CustomerView(BaseModel):
    profile: Profile
    kyc: list[KycSubmissionRow]
    limits: dict[str, LimitUsage]  # "trading", "withdrawal": rolling 24 h, GBP
    balances: list[AccountBalance]
    ledger: LedgerTrail
    orders: list[OrderRow]
    deposits: list[DepositOut]
    withdrawals: list[WithdrawalOut]
    sessions: list[SessionRow]
    devices: list[DeviceRow]
    notifications: list[dict[str, Any]] = Field(
        default_factory=list, description="the customer's notifications, where that service keeps them"
    )
    audit: list[AuditRow]

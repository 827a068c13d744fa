"""Deposits and withdrawals (docs/architecture.md §C.7, §C.4, §5): tables, and the pydantic types that cross
Temporal and HTTP (never table rows: those don't round-trip and would make histories unreplayable).

New fields of the I/O types always get defaults, so histories recorded before a change stay replayable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import jsonb, money, timestamp


class WithdrawalStatus(StrEnum):
    PENDING = "PENDING"  # accepted, funds being reserved
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # waiting for approvers (four eyes)
    HALTED = "HALTED"  # the currency's withdrawals are halted by ops; waits until lifted
    APPROVED = "APPROVED"  # cleared to execute
    PROCESSING = "PROCESSING"  # sent to the bank / provider; can no longer be cancelled
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    # The outcome at the bank/venue is unknown after repeated lookups, or the books could not be completed
    # after the money left: the hold is kept and ops resolve it (mark paid / mark not paid).
    NEEDS_ATTENTION = "NEEDS_ATTENTION"
    # Held for compliance (AML monitoring's block_and_review): the hold is kept until a proven
    # `compliance_decision` clears or declines it. Customers see only "under review", never why.
    UNDER_REVIEW = "UNDER_REVIEW"


FINAL_WITHDRAWAL_STATUSES = frozenset(
    {
        WithdrawalStatus.COMPLETED,
        WithdrawalStatus.FAILED,
        WithdrawalStatus.REJECTED,
        WithdrawalStatus.CANCELLED,
    }
)
_STATUS_SQL = ", ".join(f"'{s.value}'" for s in WithdrawalStatus)


class Deposit(SQLModel, table=True):
    __tablename__ = "deposits"
    __table_args__ = (
        # One row per output: a chain transaction can pay several of our addresses (0012).
        UniqueConstraint("provider", "provider_tx_id", "output", name="uq_deposits_provider_tx_output"),
        CheckConstraint("amount > 0", name="ck_deposits_amount_pos"),
        Index("ix_deposits_user_created", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")  # None: in suspense
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    payment_method: str | None = Field(default=None, max_length=50)
    provider: str | None = Field(default=None, max_length=50)
    provider_tx_id: str | None = Field(default=None, max_length=100)
    reference: str | None = Field(default=None, max_length=100)
    status: str = Field(default="PENDING", max_length=20, sa_column_kwargs={"server_default": "PENDING"})
    ledger_entry_id: uuid.UUID | None = Field(default=None, foreign_key="ledger_entries.id")
    ledger_transaction_id: uuid.UUID | None = Field(default=None, foreign_key="ledger_transactions.id")
    details: dict[str, Any] | None = Field(default=None, sa_column=jsonb())  # payer, address, confirmations
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    confirmed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    # Which output of the transaction this is: "" for a bank payment, the receiving address (with
    # "#<index>" when the venue reports an output index) for an on-chain deposit (0012).
    output: str = Field(default="", max_length=140, sa_column_kwargs={"server_default": ""})


class DepositSuspense(SQLModel, table=True):
    """A deposit we were told about but cannot credit (an unlisted asset, an amount finer than our scale, a
    signed bank event with an impossible currency or amount). Nothing is booked and nothing is rounded:
    the raw values wait here, OPEN, for ops (an alert was raised when the row was written)."""

    __tablename__ = "deposit_suspense"
    __table_args__ = (
        UniqueConstraint("source", "external_id", "output", name="uq_deposit_suspense_source_tx"),
        CheckConstraint("status IN ('OPEN', 'RESOLVED')", name="ck_deposit_suspense_status"),
        Index("ix_deposit_suspense_status_created", "status", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    source: str = Field(max_length=50)  # "bank" or the venue that reported it
    external_id: str = Field(max_length=200)  # the bank's transaction id / the chain tx id
    output: str = Field(default="", max_length=140, sa_column_kwargs={"server_default": ""})
    user_id: uuid.UUID | None = Field(default=None, foreign_key="users.id")
    currency: str = Field(max_length=20)  # as reported (may be one we do not hold)
    amount: str = Field(max_length=100)  # as reported, verbatim: never rounded or parsed into money
    reason: str = Field(max_length=50)  # a stable code, e.g. "unlisted_asset", "amount_finer_than_scale"
    detail: str | None = None
    payload: dict[str, Any] | None = Field(default=None, sa_column=jsonb())
    status: str = Field(default="OPEN", max_length=20, sa_column_kwargs={"server_default": "OPEN"})
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    resolved_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class Withdrawal(SQLModel, table=True):
    __tablename__ = "withdrawals"
    __table_args__ = (
        CheckConstraint("amount > 0 AND fee >= 0", name="ck_withdrawals_amounts"),
        CheckConstraint(f"status IN ({_STATUS_SQL})", name="ck_withdrawals_status"),
        Index("ix_withdrawals_user_created", "user_id", "created_at"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    currency: str = Field(max_length=10)
    amount: Decimal = Field(sa_column=money())
    fee: Decimal = Field(default=Decimal(0), sa_column=money(server_default="0"))
    destination_address: str | None = None
    status: str = Field(
        default="PENDING", max_length=20, index=True, sa_column_kwargs={"server_default": "PENDING"}
    )
    tx_hash: str | None = Field(default=None, max_length=100)
    provider: str | None = Field(default=None, max_length=50)
    approved_by: uuid.UUID | None = None
    approved_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    completed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    # Added by the payments migration (0004).
    destination_type: str | None = Field(default=None, max_length=10)  # "bank" | "crypto"
    address_id: uuid.UUID | None = Field(default=None, foreign_key="withdrawal_addresses.id")
    bank_account_id: uuid.UUID | None = Field(default=None, foreign_key="bank_accounts.id")
    notional_gbp: Decimal | None = Field(default=None, sa_column=money(nullable=True))
    hold_id: uuid.UUID | None = Field(default=None, foreign_key="holds.id")
    approvals_required: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    flagged: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    reason: str | None = None  # why it was rejected, failed or cancelled
    provider_ref: str | None = Field(default=None, max_length=100)  # bank payout id / venue withdrawal id
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
    # UK Travel Rule (0030): who receives a crypto withdrawal of £1,000 or more and where the wallet is.
    travel_rule_beneficiary: str | None = Field(default=None, max_length=140)
    travel_rule_wallet: str | None = Field(default=None, max_length=12)  # "self_hosted" | "provider"
    travel_rule_provider: str | None = Field(default=None, max_length=140)  # the provider holding it
    travel_rule_own_wallet: bool | None = None  # the beneficiary is the customer (name matched)


class DepositReference(SQLModel, table=True):
    """The customer's unique payment reference at the bank (Modulr-style virtual account)."""

    __tablename__ = "deposit_references"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", unique=True)
    provider: str = Field(max_length=50)
    reference: str = Field(max_length=35, unique=True)
    sort_code: str = Field(max_length=6)
    account_number: str = Field(max_length=8)
    account_name: str = Field(max_length=140)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class BankAccountStatus(StrEnum):
    """Whether a payer account may receive the customer's GBP withdrawals (0012).

    Money arriving under a customer's reference proves only that someone knows the reference, so a
    payer account starts UNCONFIRMED (its holder name matched or closely matched the customer's name)
    or HELD_FOR_REVIEW (no match: ops decide). The customer confirms it with TOTP → CONFIRMED, usable
    from `usable_from` (after the cooling-off period). Ops can REJECT a held one."""

    UNCONFIRMED = "UNCONFIRMED"
    HELD_FOR_REVIEW = "HELD_FOR_REVIEW"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"


_BANK_ACCOUNT_STATUS_SQL = ", ".join(f"'{s.value}'" for s in BankAccountStatus)


class BankAccount(SQLModel, table=True):
    """A customer's own bank account. `verified` means money arrived from it under their reference; it
    can receive GBP withdrawals (closed loop) only once CONFIRMED and past `usable_from`."""

    __tablename__ = "bank_accounts"
    __table_args__ = (
        UniqueConstraint("user_id", "sort_code", "account_number", name="uq_bank_accounts_user_account"),
        CheckConstraint(f"status IN ({_BANK_ACCOUNT_STATUS_SQL})", name="ck_bank_accounts_status"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    holder_name: str = Field(max_length=140)
    sort_code: str = Field(max_length=6)
    account_number: str = Field(max_length=8)
    verified: bool = Field(default=False, sa_column_kwargs={"server_default": "false"})
    verified_by: str | None = Field(default=None, max_length=50)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    # Added by 0012: the name check (Confirmation of Payee model) and the customer's TOTP confirmation.
    status: str = Field(
        default="UNCONFIRMED", max_length=20, sa_column_kwargs={"server_default": "UNCONFIRMED"}
    )
    name_match: str | None = Field(default=None, max_length=12)  # "match" | "close_match" | "no_match"
    name_score: int | None = None  # 0-100, the fuzzy similarity of holder and customer names
    confirmed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    usable_from: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


class WithdrawalAddress(SQLModel, table=True):
    """A whitelisted crypto destination. Usable only after `usable_from` (24 h after it was added)."""

    __tablename__ = "withdrawal_addresses"
    __table_args__ = (
        UniqueConstraint("user_id", "currency", "address", "tag", name="uq_withdrawal_addresses"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id", index=True)
    currency: str = Field(max_length=10)
    address: str = Field(max_length=128)
    tag: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    label: str | None = Field(default=None, max_length=100)
    usable_from: datetime = Field(sa_column=timestamp(now=False))
    removed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class WithdrawalApproval(SQLModel, table=True):
    """A decision the withdrawal saga accepted (refused attempts go to the audit log only)."""

    __tablename__ = "withdrawal_approvals"
    __table_args__ = (
        UniqueConstraint("withdrawal_id", "approver_id", "decision", name="uq_withdrawal_approvals"),
        CheckConstraint("decision IN ('approve', 'reject')", name="ck_withdrawal_approvals_decision"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    withdrawal_id: uuid.UUID = Field(foreign_key="withdrawals.id", index=True)
    approver_id: uuid.UUID = Field(foreign_key="users.id")
    decision: str = Field(max_length=10)
    reason: str | None = None
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class CurrencyHalt(SQLModel, table=True):
    """A currency whose withdrawals are halted (ops, later reconciliation). No row: not halted."""

    __tablename__ = "currency_halts"

    currency: str = Field(primary_key=True, max_length=10, foreign_key="currencies.code")
    reason: str
    halted_by: uuid.UUID | None = None
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class CryptoDepositAddress(SQLModel, table=True):
    """The provider deposit address given to one customer; deposits to it are credited to them."""

    __tablename__ = "crypto_deposit_addresses"
    __table_args__ = (
        UniqueConstraint("provider", "currency", "address", "tag", name="uq_crypto_deposit_addresses"),
        UniqueConstraint("user_id", "provider", "currency", name="uq_crypto_deposit_addresses_user"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: uuid.UUID = Field(foreign_key="users.id")
    provider: str = Field(max_length=50)
    currency: str = Field(max_length=10)
    address: str = Field(max_length=128)
    tag: str = Field(default="", max_length=64, sa_column_kwargs={"server_default": ""})
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class FloatTopUp(SQLModel, table=True):
    """A top-up of the provider omnibus (hot wallet) requested by the float monitor (docs/architecture.md
    §5)."""

    __tablename__ = "float_topups"
    __table_args__ = (Index("ix_float_topups_provider_currency", "provider", "currency", "status"),)

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    provider: str = Field(max_length=50)
    currency: str = Field(max_length=10)
    balance: Decimal = Field(sa_column=money())
    threshold: Decimal = Field(sa_column=money())
    target: Decimal = Field(sa_column=money())
    amount: Decimal = Field(sa_column=money())
    status: str = Field(default="REQUESTED", max_length=20, sa_column_kwargs={"server_default": "REQUESTED"})
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    completed_at: datetime | None = Field(default=None, sa_column=timestamp(nullable=True, now=False))


# --- workflow and activity I/O ------------------------------------------------------------------


class BankPayment(BaseModel):
    """An inbound Faster Payment as the bank reported it."""

    bank_tx_id: str
    amount: Decimal
    currency: str = "GBP"
    reference: str
    payer_name: str = ""
    payer_sort_code: str = ""
    payer_account_number: str = ""
    received_at: datetime | None = None


class DepositResult(BaseModel):
    deposit_id: uuid.UUID
    user_id: uuid.UUID | None  # None: unattributed, booked to suspense
    currency: str
    amount: Decimal
    status: str
    replayed: bool = False
    balance_after: Decimal | None = None
    email: str | None = None


class CryptoPollInput(BaseModel):
    providers: list[str] = []
    min_confirmations: int = 2


class CryptoPollResult(BaseModel):
    credited: int = 0
    suspense: int = 0  # booked to the suspense account (nobody owns the address)
    waiting: int = 0
    held: int = 0  # not booked: in `deposit_suspense` for ops (unlisted asset, finer than our scale)
    errors: int = 0  # failed this poll for another reason; tried again next poll


class Destination(BaseModel):
    kind: str  # "bank" | "crypto"
    address: str | None = None
    tag: str | None = None
    address_id: uuid.UUID | None = None
    bank_account_id: uuid.UUID | None = None
    sort_code: str | None = None
    account_number: str | None = None
    holder_name: str | None = None


def withdrawal_workflow_id(withdrawal_id: uuid.UUID | str) -> str:
    """The withdrawal saga's workflow id: the business id, so a duplicate start is refused by Temporal
    and ops find a customer's case in the Web UI by it."""
    return f"withdrawal-{withdrawal_id}"


class WithdrawalInput(BaseModel):
    withdrawal_id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    amount: Decimal
    fee: Decimal
    notional_gbp: Decimal
    destination: Destination
    provider: str  # "bank" for GBP, the venue name for crypto
    approvals_required: int = 0  # 0: automatic; 1 or 2 distinct approvers
    approval_timeout_seconds: float = 72 * 3600
    halt_poll_seconds: float = 60
    settle_poll_seconds: float = 30
    # "Not found" at the bank/venue is unknown, not failure: only this many lookups in a row, at least
    # `absence_interval_seconds` apart, that all find nothing count as absence (then ops decide).
    absence_checks: int = 5
    absence_interval_seconds: float = 60
    # A send that provably never reached the bank/venue (unreachable, rate limited) is tried again this often.
    send_attempts: int = 10
    # When the request was accepted: the venue's history is searched from a little before it.
    requested_at: datetime | None = None


class Decision(BaseModel):
    """An approver's `approve` or `reject`, from the admin API or `temporal workflow signal`.

    `token` is the proof: a short-lived decision token the API signs for that staff user after a TOTP
    check (admin API, or `python -m cli approval-token` for the Web UI/CLI). A decision without a valid
    token for this approver, withdrawal and action is refused and audited."""

    approver_id: uuid.UUID
    reason: str = ""
    token: str = ""


class Resolution(BaseModel):
    """Ops' answer for a withdrawal in NEEDS_ATTENTION: was the money paid out or not.

    `paid`: the books are completed (amount out of the omnibus/bank, fee to revenue); not paid: the hold is
    released. `token` is a decision token for action `resolve_paid` / `resolve_not_paid`."""

    staff_id: uuid.UUID
    paid: bool
    reason: str = ""
    token: str = ""
    provider_ref: str | None = None


class DecisionOutcome(BaseModel):
    accepted: bool
    code: str  # "approved" | "approval_recorded" | "rejected" | a refusal code
    detail: str = ""
    status: str = ""


class WithdrawalState(BaseModel):
    withdrawal_id: uuid.UUID
    status: str
    reason: str | None = None
    approvals: list[uuid.UUID] = []
    approvals_required: int = 0


class PayoutUpdate(BaseModel):
    """The bank's word on a payout (webhook), passed to the waiting saga as a signal."""

    payout_id: str
    status: str  # "completed" | "failed"
    reason: str = ""
    # Signed by the API after it verified the bank's webhook signature (`services.decision_tokens`):
    # an update without it (anyone who can reach Temporal) is refused and audited.
    proof: str = ""


class ExecutionOutcome(BaseModel):
    """What the bank/venue says about our withdrawal.

    completed / failed / pending: its word. "not_sent": a send the other side provably never received
    (unreachable before sending, rate limited): may be sent again. "absent": a lookup found no record;
    "unknown": the send or the lookup had no answer. Neither of the last two is failure."""

    status: str  # "completed" | "failed" | "pending" | "not_sent" | "absent" | "unknown"
    provider_ref: str | None = None
    tx_hash: str | None = None
    reason: str = ""
    network_fee: Decimal | None = None  # what the venue charged our omnibus on top of the amount


class ProofCheck(BaseModel):
    """A decision or outcome to verify in an activity before the workflow counts it."""

    withdrawal_id: uuid.UUID
    action: str
    actor_id: uuid.UUID | None = None
    token: str = ""
    detail: str = ""


class AttentionNotice(BaseModel):
    withdrawal_id: uuid.UUID
    reason: str


class FloatCheckInput(BaseModel):
    thresholds: dict[str, Decimal]
    targets: dict[str, Decimal]
    providers: list[str] = []


class FloatCheckResult(BaseModel):
    checked: int = 0
    below: list[str] = []
    requested: list[uuid.UUID] = []


class StatusChange(BaseModel):
    withdrawal_id: uuid.UUID
    status: WithdrawalStatus
    reason: str | None = None


class DecisionCheck(BaseModel):
    withdrawal_id: uuid.UUID
    requester_id: uuid.UUID
    approver_id: uuid.UUID
    decision: str  # "approve" | "reject"
    reason: str = ""
    token: str = ""


class HaltQuery(BaseModel):
    currency: str
    user_id: uuid.UUID | None = None  # the customer: a frozen account's withdrawal waits too (0030)


class CompleteInput(BaseModel):
    withdrawal: WithdrawalInput
    hold_id: uuid.UUID
    provider_ref: str | None = None
    tx_hash: str | None = None
    network_fee: Decimal | None = None


class ReleaseInput(BaseModel):
    withdrawal_id: uuid.UUID
    hold_id: uuid.UUID | None = None
    status: WithdrawalStatus
    reason: str


class WithdrawalNotice(BaseModel):
    withdrawal_id: uuid.UUID
    user_id: uuid.UUID
    currency: str
    amount: Decimal
    status: str
    reason: str | None = None

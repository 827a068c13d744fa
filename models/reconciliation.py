"""Reconciliation (issue 20): the circuit breaker's tables and the saga's I/O types.

The per-currency results live in `reconciliation_runs` (models/compliance.py). A currency the
reconciliation halted has a `reconciliation_halts` row next to its `currency_halts` row (the halt every
withdrawal saga already obeys); resuming it needs clean runs and two staff acknowledgements
(`reconciliation_acks`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from pydantic import Field as PField
from sqlalchemy import CheckConstraint, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from models.columns import timestamp


class ReconciliationHalt(SQLModel, table=True):
    """A currency halted by reconciliation. No row: reconciliation has no objection to its withdrawals."""

    __tablename__ = "reconciliation_halts"

    currency: str = Field(primary_key=True, max_length=10)
    run_id: uuid.UUID
    reasons: str = Field(sa_column=Column(Text, nullable=False))
    clean_runs: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class ReconciliationAck(SQLModel, table=True):
    """One staff member's acknowledgement of a halt (resume after clean runs, or override)."""

    __tablename__ = "reconciliation_acks"
    __table_args__ = (
        CheckConstraint("kind IN ('resume', 'override')", name="ck_reconciliation_acks_kind"),
        UniqueConstraint("currency", "halt_run_id", "staff_id", name="uq_reconciliation_acks_staff"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    currency: str = Field(max_length=10)
    halt_run_id: uuid.UUID
    staff_id: uuid.UUID = Field(foreign_key="users.id")
    kind: str = Field(max_length=10)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class RunStatus(StrEnum):
    MATCHED = "MATCHED"
    DISCREPANCY = "DISCREPANCY"
    ERROR = "ERROR"


# --- workflow and activity I/O (pydantic; new fields get defaults so histories replay) ------------


class ReconcileInput(BaseModel):
    """One run. `run_id` None: derived from the workflow's id by the workflow."""

    run_id: uuid.UUID | None = None
    trigger: str = "schedule"


class CutOff(BaseModel):
    """The run's one cut-off and the sources to read for it."""

    run_id: uuid.UUID
    cut_off: datetime
    venues: list[str] = PField(default_factory=list)
    bank: bool = True
    wallets: bool = False  # self-custody hot wallets configured: read their on-chain balances
    since: datetime | None = None  # the previous run's cut-off: venue trades are read from there


class SourceQuery(BaseModel):
    source: str
    cut_off: datetime


class SourceRead(BaseModel):
    """One source's balances at the cut-off (currency -> amount), or why it could not be read."""

    source: str
    balances: dict[str, Decimal] = PField(default_factory=dict)
    error: str | None = None
    items: list[dict[str, Any]] = PField(default_factory=list)


class LedgerRead(BaseModel):
    """The books at the cut-off: house assets per source (positive = held there) and customer liabilities."""

    assets: dict[str, dict[str, Decimal]] = PField(default_factory=dict)  # source -> currency -> amount
    liabilities: dict[str, Decimal] = PField(default_factory=dict)


class InFlightRead(BaseModel):
    """Items our sagas know are between the outside world and the books: currency -> signed amount
    (what the provider shows that the ledger does not yet), each listed by id."""

    totals: dict[str, Decimal] = PField(default_factory=dict)
    items: list[dict[str, Any]] = PField(default_factory=list)


class FillsRead(BaseModel):
    """Venue trades matched with provider_fills: unmatched items on either side, by id."""

    matched: int = 0
    unmatched_venue: list[dict[str, Any]] = PField(default_factory=list)
    unmatched_ours: list[dict[str, Any]] = PField(default_factory=list)
    error: str | None = None
    venues_read: list[str] = PField(default_factory=list)


class ChainRead(BaseModel):
    """On-chain checks of completed withdrawals and credited deposits."""

    missing_withdrawals: list[dict[str, Any]] = PField(default_factory=list)
    missing_deposits: list[dict[str, Any]] = PField(default_factory=list)
    checked: int = 0
    error: str | None = None


class RecordInput(BaseModel):
    run_id: uuid.UUID
    cut_off: datetime
    trigger: str = "schedule"
    sources: list[SourceRead] = PField(default_factory=list)
    ledger: LedgerRead | None = None
    ledger_error: str | None = None
    in_flight: InFlightRead = PField(default_factory=InFlightRead)
    fills: FillsRead = PField(default_factory=FillsRead)
    chain: ChainRead = PField(default_factory=ChainRead)


class CurrencyOutcome(BaseModel):
    currency: str
    status: RunStatus
    provider_balance: Decimal | None = None
    ledger_balance: Decimal | None = None
    in_flight: Decimal = Decimal(0)
    discrepancy: Decimal | None = None
    halted: bool = False
    reasons: list[str] = PField(default_factory=list)


class RunResult(BaseModel):
    run_id: uuid.UUID
    cut_off: datetime
    currencies: list[CurrencyOutcome] = PField(default_factory=list)

    def status(self, currency: str) -> RunStatus | None:
        return next((c.status for c in self.currencies if c.currency == currency), None)


class FillsAndFlight(BaseModel):
    fills: FillsRead
    in_flight: InFlightRead

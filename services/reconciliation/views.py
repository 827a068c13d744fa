"""Reconciliation as staff read it (the console's reconciliation screen): recent runs with each currency's
verdict, one run's currencies with their items (in flight, unmatched fills, missing on-chain), and the
halts with the acknowledgements given so far toward the two-person resume (`halts.acknowledge`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.assets import SCALES
from models.money import money
from services.errors import DomainError


class RunNotFound(DomainError):
    """No reconciliation run with that id."""

    default_code = "not_found"
    status = 404


class RunSummary(BaseModel):
    run_id: uuid.UUID
    created_at: datetime
    cut_off: datetime | None
    trigger: str | None
    verdicts: dict[str, str]  # currency -> MATCHED | DISCREPANCY | ERROR

    @property
    def clean(self) -> bool:
        return all(v == "MATCHED" for v in self.verdicts.values())


class RunCurrency(BaseModel):
    currency: str
    status: str
    provider_balance: str | None
    ledger_balance: str | None
    in_flight: str | None
    discrepancy: str | None
    reasons: list[str]
    items: dict[str, list[dict[str, Any]]]  # in_flight_items, unmatched_fills, missing_on_chain, ...
    details: dict[str, Any]


class Ack(BaseModel):
    staff_id: uuid.UUID
    email: str | None
    kind: str
    reason: str
    created_at: datetime


class HaltView(BaseModel):
    currency: str
    run_id: uuid.UUID
    reasons: str
    clean_runs: int
    created_at: datetime
    acks: list[Ack]


ITEM_KEYS = ("in_flight_items", "unmatched_fills", "missing_on_chain", "deposits_without_chain_tx")


async def recent_runs(engine: AsyncEngine, *, limit: int = 30) -> list[RunSummary]:
    """The newest runs, each with every currency's verdict."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT run_id, min(created_at) AS created_at, min(cut_off) AS cut_off, "
                    "min(details->>'trigger') AS trigger, jsonb_object_agg(currency, status) AS verdicts "
                    "FROM reconciliation_runs WHERE run_id IS NOT NULL GROUP BY run_id "
                    "ORDER BY min(created_at) DESC LIMIT :n"
                ),
                {"n": limit},
            )
        ).all()
    return [RunSummary.model_validate(r._mapping) for r in rows]


def _amount(v: Decimal | None, currency: str) -> str | None:
    """At the currency's scale; a currency no longer listed shows its stored digits."""
    if v is None or currency not in SCALES:
        return None if v is None else format(v, "f")
    return money(v, currency)


async def run_detail(engine: AsyncEngine, run_id: uuid.UUID) -> list[RunCurrency]:
    """One run: every currency with its balances, reasons and unmatched items."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT currency, status, provider_balance, ledger_balance, in_flight, discrepancy, "
                    "details FROM reconciliation_runs WHERE run_id = :r ORDER BY currency"
                ),
                {"r": run_id},
            )
        ).all()
    if not rows:
        raise RunNotFound(f"no reconciliation run {run_id}")
    out = []
    for r in rows:
        details: dict[str, Any] = r.details or {}
        out.append(
            RunCurrency(
                currency=r.currency,
                status=r.status,
                provider_balance=_amount(r.provider_balance, r.currency),
                ledger_balance=_amount(r.ledger_balance, r.currency),
                in_flight=_amount(r.in_flight, r.currency),
                discrepancy=_amount(r.discrepancy, r.currency),
                reasons=list(details.get("reasons") or []),
                items={k: list(details.get(k) or []) for k in ITEM_KEYS},
                details=details,
            )  # fmt: skip
        )
    return out


async def halts(engine: AsyncEngine) -> list[HaltView]:
    """Currencies halted by reconciliation, each with the acknowledgements toward its resume."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT h.currency, h.run_id, h.reasons, h.clean_runs, h.created_at, "
                    "coalesce((SELECT jsonb_agg(jsonb_build_object('staff_id', a.staff_id, 'email', u.email, "
                    "'kind', a.kind, 'reason', a.reason, 'created_at', a.created_at) ORDER BY a.created_at) "
                    "FROM reconciliation_acks a LEFT JOIN users u ON u.id = a.staff_id "
                    "WHERE a.currency = h.currency AND a.halt_run_id = h.run_id), '[]') AS acks "
                    "FROM reconciliation_halts h ORDER BY h.currency"
                )
            )
        ).all()
    return [HaltView.model_validate(r._mapping) for r in rows]

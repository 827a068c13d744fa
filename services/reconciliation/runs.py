"""A run's verdict and its record: per currency the three balances, the drift and the status; one
`reconciliation_runs` row per currency; the circuit breaker (halt, alert) applied once per run id."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import CRYPTO, SCALES
from models.market import split_symbol
from models.reconciliation import CurrencyOutcome, RecordInput, RunResult, RunStatus
from services.alerts import ops_notice
from services.payments import audit
from services.reconciliation.halts import customer_message

log = logging.getLogger("reconciliation")
ZERO = Decimal(0)


@dataclass(frozen=True)
class Policy:
    tolerances: dict[str, Decimal]
    clean_runs_to_resume: int = 2
    error_runs_to_alert: int = 3
    currencies: tuple[str, ...] = tuple(SCALES)


def assess(data: RecordInput, policy: Policy) -> list[CurrencyOutcome]:
    """Per currency: the three balances, the drift and the verdict (pure; no I/O)."""
    failed_sources = sorted(s.source for s in data.sources if s.error)
    fills_failed = data.fills.error is not None
    outcomes = []
    for cur in policy.currencies:
        reasons: list[str] = []
        provider = sum((s.balances.get(cur, ZERO) for s in data.sources if not s.error), ZERO)
        flight = data.in_flight.totals.get(cur, ZERO)
        ledger = None
        if data.ledger is not None:
            ledger = sum((a.get(cur, ZERO) for a in data.ledger.assets.values()), ZERO)
        status = RunStatus.MATCHED
        drift: Decimal | None = None
        if ledger is not None:
            drift = provider - ledger - flight
        halt = False
        chain_failed = bool(data.chain.error) and cur in CRYPTO
        if failed_sources or data.ledger is None or fills_failed or chain_failed:
            status = RunStatus.ERROR
            reasons += [f"source {s} unreadable" for s in failed_sources]
            if data.ledger is None:
                reasons.append("ledger unreadable")
            if fills_failed:
                reasons.append("venue trades unreadable")
            if chain_failed:
                reasons.append(f"chain unreadable: {data.chain.error}")
        elif drift is not None and abs(drift) > policy.tolerances.get(cur, ZERO):
            status = RunStatus.DISCREPANCY
            halt = True
            reasons.append(f"unexplained drift {drift}")
        unmatched = [
            u for u in data.fills.unmatched_venue + data.fills.unmatched_ours if cur in _currencies_of(u)
        ]
        if unmatched:
            halt = True
            status = RunStatus.DISCREPANCY if status is not RunStatus.ERROR else status
            reasons.append(f"{len(unmatched)} unmatched fill(s)")
        missing = [m for m in data.chain.missing_withdrawals if m.get("currency") == cur]
        if missing:
            halt = True
            status = RunStatus.DISCREPANCY if status is not RunStatus.ERROR else status
            reasons.append(f"{len(missing)} withdrawal(s) absent on-chain")
        if [m for m in data.chain.missing_deposits if m.get("currency") == cur]:
            halt = True
            status = RunStatus.DISCREPANCY if status is not RunStatus.ERROR else status
            reasons.append("credited deposit(s) without their chain transaction")
        outcomes.append(
            CurrencyOutcome(
                currency=cur,
                status=status,
                provider_balance=provider if not failed_sources else None,
                ledger_balance=ledger,
                in_flight=flight,
                discrepancy=drift,
                halted=halt,
                reasons=reasons,
            )
        )
    return outcomes


def _currencies_of(item: dict[str, Any]) -> set[str]:
    symbol = item.get("symbol")
    if symbol:
        return set(split_symbol(symbol))
    return set(SCALES)  # an unmatched row of ours: its symbol is in provider_fills; be safe: all of them


async def record_run(engine: AsyncEngine, data: RecordInput, policy: Policy) -> RunResult:
    """Write one row per currency, apply the circuit breaker and alert. Idempotent by run id: a retried
    activity finds the rows written and returns them without halting or alerting twice."""
    outcomes = assess(data, policy)
    result = RunResult(run_id=data.run_id, cut_off=data.cut_off, currencies=outcomes)
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('reconciliation'))"))
        done = (
            await conn.execute(
                text("SELECT 1 FROM reconciliation_runs WHERE run_id = :r LIMIT 1"), {"r": data.run_id}
            )
        ).first()
        if done is not None:
            return await load_result(conn, data.run_id, data.cut_off)
        for o in outcomes:
            details = {
                "trigger": data.trigger,
                "reasons": o.reasons,
                "sources": {
                    s.source: (
                        {"error": s.error} if s.error else {"balance": str(s.balances.get(o.currency, ZERO))}
                    )
                    for s in data.sources
                },
                "ledger_by_source": {
                    src: str(v.get(o.currency, ZERO))
                    for src, v in (data.ledger.assets if data.ledger else {}).items()
                },
                "in_flight_items": [
                    i for i in data.in_flight.items if i.get("currency") in (None, o.currency)
                ],
                "unmatched_fills": [
                    u
                    for u in data.fills.unmatched_venue + data.fills.unmatched_ours
                    if o.currency in _currencies_of(u)
                ],
                "fills_matched": data.fills.matched,
                "missing_on_chain": [
                    m for m in data.chain.missing_withdrawals if m.get("currency") == o.currency
                ],
                "deposits_without_chain_tx": [
                    m for m in data.chain.missing_deposits if m.get("currency") == o.currency
                ],
                "halted": o.halted,
            }
            await conn.execute(
                text(
                    "INSERT INTO reconciliation_runs (id, run_id, currency, cut_off, provider_balance, "
                    "ledger_balance, in_flight, customer_liabilities, discrepancy, status, details) VALUES "
                    "(:id, :run, :c, :cut, :pb, :lb, :fl, :cl, :d, :s, CAST(:det AS jsonb))"
                ),
                {
                    "id": uuid.uuid5(data.run_id, o.currency),
                    "run": data.run_id,
                    "c": o.currency,
                    "cut": data.cut_off,
                    "pb": o.provider_balance,
                    "lb": o.ledger_balance,
                    "fl": o.in_flight,
                    "cl": data.ledger.liabilities.get(o.currency, ZERO) if data.ledger else None,
                    "d": o.discrepancy,
                    "s": o.status.value,
                    "det": json.dumps(details, default=str),
                },
            )
            await _breaker(conn, data.run_id, o, policy)
    return result


async def _breaker(conn: AsyncConnection, run_id: uuid.UUID, o: CurrencyOutcome, policy: Policy) -> None:
    if o.halted:
        await conn.execute(
            text(
                "INSERT INTO reconciliation_halts (currency, run_id, reasons) VALUES (:c, :r, :why) "
                "ON CONFLICT (currency) DO UPDATE SET clean_runs = 0"
            ),
            {"c": o.currency, "r": run_id, "why": "; ".join(o.reasons)},
        )
        await conn.execute(
            text(
                "INSERT INTO currency_halts (currency, reason, halted_by) VALUES (:c, :r, NULL) "
                "ON CONFLICT (currency) DO NOTHING"
            ),
            {"c": o.currency, "r": customer_message(o.currency)},
        )
        await audit(
            conn, "reconciliation.halt", actor_id=None, actor_type="system", target_type="currency",
            target_id=o.currency, run_id=str(run_id), reasons=o.reasons,
        )  # fmt: skip
        log.error("OPS ALERT reconciliation halted %s withdrawals: run %s: %s", o.currency, run_id, o.reasons)
        await ops_notice(
            conn, "ops.alert.reconciliation_mismatch", target_type="currency", target_id=o.currency,
            run_id=str(run_id), discrepancy=str(o.discrepancy), reasons="; ".join(o.reasons),
        )  # fmt: skip
        return
    if o.status is RunStatus.MATCHED:
        await conn.execute(
            text("UPDATE reconciliation_halts SET clean_runs = clean_runs + 1 WHERE currency = :c"),
            {"c": o.currency},
        )
        return
    # ERROR: neither clean nor a reason to halt (it breaks a halted currency's run of clean runs); alert
    # when it has lasted several runs.
    await conn.execute(
        text("UPDATE reconciliation_halts SET clean_runs = 0 WHERE currency = :c"), {"c": o.currency}
    )
    recent = (
        await conn.execute(
            text(
                "SELECT status FROM reconciliation_runs WHERE currency = :c ORDER BY created_at DESC, "
                "cut_off DESC LIMIT :n"
            ),
            {"c": o.currency, "n": policy.error_runs_to_alert},
        )
    ).all()
    if len(recent) >= policy.error_runs_to_alert and all(r[0] == RunStatus.ERROR for r in recent):
        await audit(
            conn, "reconciliation.source_error", actor_id=None, actor_type="system", target_type="currency",
            target_id=o.currency, run_id=str(run_id), reasons=o.reasons,
        )  # fmt: skip
        log.error(
            "OPS ALERT reconciliation of %s could not run for %d runs: %s",
            o.currency, len(recent), o.reasons,
        )  # fmt: skip


async def load_result(conn: AsyncConnection, run_id: uuid.UUID, cut_off: datetime) -> RunResult:
    rows = (
        await conn.execute(
            text(
                "SELECT currency, status, provider_balance, ledger_balance, in_flight, discrepancy, details "
                "FROM reconciliation_runs WHERE run_id = :r ORDER BY currency"
            ),
            {"r": run_id},
        )
    ).all()
    return RunResult(
        run_id=run_id,
        cut_off=cut_off,
        currencies=[
            CurrencyOutcome(
                currency=r[0], status=RunStatus(r[1]), provider_balance=r[2], ledger_balance=r[3],
                in_flight=r[4] or ZERO, discrepancy=r[5], halted=bool((r[6] or {}).get("halted")),
                reasons=list((r[6] or {}).get("reasons") or []),
            )
            for r in rows
        ],
    )  # fmt: skip


async def last_cut_off(engine: AsyncEngine) -> datetime | None:
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT max(cut_off) FROM reconciliation_runs"))).first()
    return row[0] if row else None

"""What the console's dashboard shows, gathered from the services that own each fact: PostgreSQL and
Temporal reachability, each venue's circuit breaker and book freshness (the API process's router and live
books), the latest reconciliation verdict per currency and its halts, the staff queues, and the float.

Each probe is bounded and independent: one part that is down shows as down, and the rest still shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.money import money, money_or_none
from models.payments_api import HaltOut, TopUpOut
from services import payments


class BreakerView(Protocol):
    def state(self, provider: str) -> Any: ...

    def recent_failures(self, provider: str) -> int: ...


class BookAges(Protocol):
    def age_s(self, venue: str, symbol: str) -> float | None: ...


@dataclass(frozen=True)
class VenueHealth:
    venue: str
    breaker: str
    recent_failures: int
    book_ages: dict[str, float | None]  # symbol -> seconds since confirmed (None: void / not streamed)


@dataclass(frozen=True)
class ReconStatus:
    currency: str
    status: str | None
    discrepancy: str | None
    created_at: datetime
    halted: bool
    halt_reasons: str | None


@dataclass
class Dashboard:
    postgres: str = "unknown"
    temporal: str = "unknown"
    venues: list[VenueHealth] = field(default_factory=list)
    max_book_age_s: float | None = None
    reconciliation: list[ReconStatus] = field(default_factory=list)
    halts: list[HaltOut] = field(default_factory=list)
    queues: dict[str, int] = field(default_factory=dict)
    top_ups: list[TopUpOut] = field(default_factory=list)
    floats: list[dict[str, Any]] = field(default_factory=list)


async def _probe(check: Awaitable[Any], timeout: float = 3.0) -> str:
    try:
        await asyncio.wait_for(check, timeout)
        return "ok"
    except Exception as e:
        return f"unavailable: {type(e).__name__}"


async def _postgres(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _queues(engine: AsyncEngine) -> dict[str, int]:
    counts = {
        "withdrawals awaiting approval": len(await payments.approval_queue(engine)),
        "withdrawals needing attention": len(await payments.attention_queue(engine)),
    }
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM kyc_submissions WHERE status = 'IN_REVIEW'), "
                    "(SELECT count(*) FROM deposit_suspense WHERE status = 'OPEN')"
                )
            )
        ).one()
    counts["KYC submissions in review"] = int(row[0])
    counts["deposits held in suspense"] = int(row[1])
    return counts


async def _reconciliation(engine: AsyncEngine) -> list[ReconStatus]:
    """The newest reconciliation row per currency, with the reconciliation halt on it if any."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT DISTINCT ON (r.currency) r.currency, r.status, r.discrepancy, r.created_at, "
                    "h.currency IS NOT NULL, h.reasons FROM reconciliation_runs r "
                    "LEFT JOIN reconciliation_halts h ON h.currency = r.currency "
                    "ORDER BY r.currency, r.created_at DESC"
                )
            )
        ).all()
    return [ReconStatus(r[0], r[1], money_or_none(r[2], r[0]), r[3], bool(r[4]), r[5]) for r in rows]


async def _floats(engine: AsyncEngine) -> list[dict[str, Any]]:
    """The venues' balances of house float as the last reconciliation read them, per currency."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT DISTINCT ON (currency) currency, provider_balance, ledger_balance, created_at "
                    "FROM reconciliation_runs WHERE provider_balance IS NOT NULL "
                    "ORDER BY currency, created_at DESC"
                )
            )
        ).all()
    return [
        {"currency": r[0], "provider": money(r[1], r[0]), "ledger": money_or_none(r[2], r[0]), "at": r[3]}
        for r in rows
    ]


async def gather(
    engine: AsyncEngine,
    *,
    temporal_check: Callable[[], Awaitable[Any]],
    breakers: BreakerView | None,
    books: BookAges | None,
    venues: Mapping[str, tuple[str, ...]],
    max_book_age_s: float | None = None,
) -> Dashboard:
    """Everything on the dashboard. `venues` maps each venue to the symbols whose books to report."""
    d = Dashboard(max_book_age_s=max_book_age_s)
    d.postgres, d.temporal = await asyncio.gather(_probe(_postgres(engine)), _probe(temporal_check()))
    for venue, symbols in venues.items():
        ages: dict[str, float | None] = {}
        for symbol in symbols:
            try:
                ages[symbol] = books.age_s(venue, symbol) if books is not None else None
            except KeyError:
                ages[symbol] = None
        d.venues.append(
            VenueHealth(
                venue=venue,
                breaker=str(getattr(breakers.state(venue), "value", "unknown")) if breakers else "unknown",
                recent_failures=breakers.recent_failures(venue) if breakers else 0,
                book_ages=ages,
            )
        )
    if d.postgres == "ok":
        d.reconciliation = await _reconciliation(engine)
        d.halts = await payments.list_halts(engine)
        d.queues = await _queues(engine)
        d.top_ups = [t for t in await payments.list_top_ups(engine, limit=20) if t.status != "DONE"]
        d.floats = await _floats(engine)
    return d

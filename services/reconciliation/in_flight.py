"""In-flight items: movements our sagas know about that a source already shows and the books do not yet
(or the reverse), each listed by id, so reconciliation explains them before it calls anything drift."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.market import split_symbol
from models.reconciliation import InFlightRead
from services.treasury import TransferInFlight

ZERO = Decimal(0)


@dataclass(frozen=True)
class VenueTrade:
    """One venue trade (ccxt `fetch_my_trades`), amounts exact."""

    venue: str
    trade_id: str
    order_id: str
    symbol: str  # ours, e.g. "BTC/GBP"
    side: str  # "buy" | "sell"
    amount: Decimal
    cost: Decimal
    fee: Decimal
    fee_currency: str
    timestamp_ms: int | None = None  # when the venue executed it (its clock); None: unknown

    def at_or_before(self, cut_off_ms: int) -> bool:
        """Whether the trade belongs to a reading as of the cut-off (a trade without a time does)."""
        return self.timestamp_ms is None or self.timestamp_ms <= cut_off_ms

    def deltas(self) -> dict[str, Decimal]:
        """How this trade moved our omnibus at the venue, per currency."""
        base, quote = split_symbol(self.symbol)
        sign = 1 if self.side == "buy" else -1
        out: dict[str, Decimal] = defaultdict(Decimal)
        out[base] += sign * self.amount
        out[quote] -= sign * self.cost
        if self.fee:
            out[self.fee_currency] -= self.fee
        return dict(out)


def balances_at_cut_off(
    balances: Mapping[str, Decimal], trades_after: Iterable[VenueTrade]
) -> dict[str, Decimal]:
    """A venue's balances as they stood at the cut-off: the balances read after it, less what the venue's
    trades after the cut-off moved (a venue only tells its balance now)."""
    out = dict(balances)
    for t in trades_after:
        for cur, delta in t.deltas().items():
            out[cur] = out.get(cur, ZERO) - delta
    return out


async def in_flight(
    engine: AsyncEngine,
    *,
    cut_off: datetime,
    trades: Iterable[VenueTrade],
    venue_deposits: Iterable[dict[str, Any]],
    transfers: Iterable[TransferInFlight] = (),
    credited_transfers: Collection[uuid.UUID] = frozenset(),
    without_trades: Collection[str] = (),
) -> InFlightRead:
    """What the sources show at the cut-off and the books as of the cut-off do not, each item by id.

    - venue trades (up to the cut-off) of our orders that the books had not settled by the cut-off: an
      order still in its saga, and one its saga settled after the cut-off (the books as of the cut-off
      do not hold that settlement, the venue's balance at the cut-off does);
    - at a venue that lists no trades (`without_trades`: the OTC desk, whose binding quotes move its
      balance when accepted), the settlements booked after the cut-off, as booked: the desk's balance,
      read after them, holds them and the books as of the cut-off do not;
    - withdrawals sent (PROCESSING) and not completed: the money left, the books still hold it;
    - venue deposits credited at the venue and not yet credited to a customer (or suspense) by us;
    - float transfers between venues not yet settled (services/treasury.py): one sent and not yet booked
      left the sending venue (minus amount and fee), and one the receiving venue credited before we booked
      it settled is there already (plus amount); one booked in flight and on the chain is listed with
      nothing to subtract (no venue shows it and the books hold it in `transfers:in_flight`).
    """
    out = InFlightRead()
    totals: dict[str, Decimal] = defaultdict(Decimal)
    async with engine.connect() as conn:
        await _orders_in_flight(conn, cut_off, trades, without_trades, out, totals)
        await _withdrawals_in_flight(conn, out, totals)
        await _venue_deposits_in_flight(conn, venue_deposits, out, totals)
    _transfers_in_flight(transfers, credited_transfers, out, totals)
    out.totals = {c: v for c, v in totals.items() if v != 0}
    return out


async def _orders_in_flight(
    conn: AsyncConnection,
    cut_off: datetime,
    trades: Iterable[VenueTrade],
    without_trades: Collection[str],
    out: InFlightRead,
    totals: dict[str, Decimal],
) -> None:
    """Venue trades of our orders the books had not settled by the cut-off, and (at venues that list no
    trades) the settlements booked after it."""
    # Our orders not settled by the cut-off are few; the venue trades are many (every trade since the
    # last run): pick their trades out in one pass. Orders settled before the cut-off are matched by
    # the fills check; strangers are unmatched there.
    unsettled = await _unsettled_at(conn, cut_off)
    by_order: dict[tuple[str, str], list[VenueTrade]] = defaultdict(list)
    if unsettled:
        for t in trades:
            key = (t.venue, t.order_id)
            if key in unsettled:
                by_order[key].append(t)
    for key, ts in by_order.items():
        order_id, booked_amount = unsettled[key]
        venue_amount = sum((t.amount for t in ts), ZERO)
        if venue_amount <= booked_amount:
            continue
        # Only the part not booked by the cut-off is in flight (a partial settlement books the rest later).
        share = (venue_amount - booked_amount) / venue_amount
        for t in ts:
            for cur, delta in t.deltas().items():
                totals[cur] += delta * share
        out.items.append({"kind": "order", "id": str(order_id), "venue": key[0], "venue_order_id": key[1]})
    if without_trades:
        for order_id, venue, cur, amount in await _booked_after(conn, cut_off, without_trades):
            totals[cur] += amount
            out.items.append({"kind": "order", "id": str(order_id), "venue": venue, "currency": cur})


async def _withdrawals_in_flight(
    conn: AsyncConnection, out: InFlightRead, totals: dict[str, Decimal]
) -> None:
    """Withdrawals sent (PROCESSING) and not completed: the money left, the books still hold it."""
    rows = (
        await conn.execute(
            text(
                "SELECT id, currency, amount, provider FROM withdrawals WHERE status = 'PROCESSING' "
                "AND provider_ref IS NOT NULL"
            )
        )
    ).all()
    for wid, cur, amount, provider in rows:
        totals[cur] -= amount
        out.items.append({"kind": "withdrawal", "id": str(wid), "currency": cur, "venue": provider})


async def _venue_deposits_in_flight(
    conn: AsyncConnection,
    venue_deposits: Iterable[dict[str, Any]],
    out: InFlightRead,
    totals: dict[str, Decimal],
) -> None:
    """Venue deposits credited at the venue and not yet credited to a customer (or suspense) by us."""
    for dep in venue_deposits:
        credited = (
            await conn.execute(
                text(
                    "SELECT 1 FROM deposits WHERE provider = :p AND provider_tx_id = :tx "
                    "AND status IN ('CONFIRMED', 'SUSPENSE')"
                ),
                {"p": dep["venue"], "tx": dep["tx_id"]},
            )
        ).first()
        if credited is None:
            totals[dep["currency"]] += Decimal(dep["amount"])
            out.items.append(
                {"kind": "deposit", "id": dep["tx_id"], "currency": dep["currency"], "venue": dep["venue"]}
            )


def _transfers_in_flight(
    transfers: Iterable[TransferInFlight],
    credited_transfers: Collection[uuid.UUID],
    out: InFlightRead,
    totals: dict[str, Decimal],
) -> None:
    """Float transfers between venues not yet settled: one sent and not yet booked left the sending venue
    (amount and fee); one the receiving venue credited before we booked it settled is there already."""
    for ft in transfers:
        sent_booked = ft.status in ("IN_FLIGHT", "NEEDS_ATTENTION") and ft.tx_hash is not None
        if not sent_booked:
            totals[ft.currency] -= ft.amount + (ft.fee or ZERO)
        if ft.id in credited_transfers:
            totals[ft.currency] += ft.amount
        out.items.append(
            {
                "kind": "float_transfer", "id": str(ft.id), "currency": ft.currency, "venue": ft.from_venue,
                "to_venue": ft.to_venue, "amount": str(ft.amount), "status": ft.status, "booked": sent_booked,
                "credited": ft.id in credited_transfers,
            }
        )  # fmt: skip


async def _booked_after(
    conn: AsyncConnection, cut_off: datetime, venues: Collection[str]
) -> list[tuple[uuid.UUID, str, str, Decimal]]:
    """Order settlements booked after the cut-off on these venues' house accounts: (order, venue,
    currency, what the venue holds more for it). An index range per account on (account_id, created_at);
    house accounts are kept from the liability side, so the asset moved is minus the entries' sum."""
    rows = (
        await conn.execute(
            text(
                "SELECT e.reference_id, substr(a.code, 10), e.currency, -sum(e.amount) FROM ledger_entries e "
                "JOIN accounts a ON a.id = e.account_id WHERE a.code = ANY(CAST(:codes AS text[])) "
                "AND e.created_at > :cut AND e.reference_type = 'ORDER' GROUP BY 1, 2, 3 ORDER BY 1, 3"
            ),
            {"codes": [f"provider:{v}" for v in venues], "cut": cut_off},
        )
    ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def _unsettled_at(
    conn: AsyncConnection, cut_off: datetime
) -> dict[tuple[str, str], tuple[uuid.UUID, Decimal]]:
    """Our venue orders the books had not wholly settled by the cut-off, by venue and venue order id: the
    order and the amount settled by then.

    Those are the orders still in their saga, and those with a settlement booked after the cut-off. A
    settlement writes its `trades` rows, its `provider_fills` row and its ledger entries in one transaction,
    all stamped with that transaction's `now()`, so a `trades` row at or before the cut-off is exactly a
    settlement `ledger_at` counts, and one after it is one that `ledger_at` takes off."""
    rows = (
        await conn.execute(
            text(
                "WITH k AS (SELECT routed_to_provider AS p, provider_order_id AS o, id FROM orders "
                "WHERE status NOT IN ('FILLED', 'PARTIALLY_FILLED', 'CANCELLED', 'EXPIRED', 'REJECTED', "
                "'FAILED') AND provider_order_id IS NOT NULL "
                "UNION SELECT provider, provider_trade_id, order_id FROM trades "
                "WHERE executed_at > :cut AND provider_trade_id IS NOT NULL) "
                "SELECT k.p, k.o, k.id, coalesce((SELECT sum(t.amount) FROM trades t WHERE t.order_id = k.id "
                "AND t.provider = k.p AND t.provider_trade_id = k.o AND t.executed_at <= :cut), 0) FROM k"
            ),
            {"cut": cut_off},
        )
    ).all()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}

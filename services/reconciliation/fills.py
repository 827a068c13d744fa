"""Fill matching: every venue trade since the last run matched one-to-one (per venue order) with
`provider_fills`; matched rows marked reconciled, the unmatched on either side listed by id.

`explain_and_match` is the whole of the run's trade step once the venues have answered (what the
`recon.read_fills` activity does with their answers, and what bench/recon.py times): the in-flight
items and the matching run side by side, each in one statement, so the cost grows with the fills, not
with Python round trips."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.reconciliation import FillsAndFlight, FillsRead
from services.reconciliation.in_flight import VenueTrade, in_flight
from services.treasury import TransferInFlight, normal_tx, transfer_tx_hashes

SEP = "\x1f"  # ASCII unit separator: joins the venue trades' ids into one parameter (never in an id)
QUOTE_TOLERANCE = Decimal("0.01")  # a venue's quote amount vs ours: rounding of the average price

# One statement per part of the venue orders, one pass over that part of our fills. The venue trades arrive
# as four texts the database splits (`string_to_array`; adapting 50,000 list items one by one in the driver
# cost more than the statement) and sums per venue order (`k`). `j` joins the venue orders fully with our
# rows: a pair is a candidate match, a venue order alone is unexplained, a row of ours alone and
# unreconciled before the cut-off is unmatched. The matches are marked by a data-modifying CTE by row
# address (`ctid = ANY`: a TID scan straight to each row, not a second scan and hash of the table); the
# outer query reads the snapshot from before the update, which is what both sides need; its last row counts
# the venue orders. Marking a fill is a HOT update (no index on `reconciled`, pages half free: migration
# 0016). `j` (about 150 bytes a venue order) is kept in memory rather than spilled to a temporary file
# (`work_mem` for this transaction only).
MATCH_WORK_MEM = "SET LOCAL work_mem = '64MB'"
MATCH_PARTS = 2  # statements run side by side, each on its own connection (and core)
_TRADES = (
    "unnest(string_to_array(:p, :sep), string_to_array(:o, :sep), CAST(string_to_array(:a, :sep) AS "
    "numeric[]), CAST(string_to_array(:c, :sep) AS numeric[])) AS t(p, o, a, c)"
)
# Each statement takes one part of the venue orders and of our rows, by the last character of the venue
# order id (the same test on both sides, so a venue order and its row are always in the same part).
PART = "ascii(right({}, 1)) % CAST(:parts AS int) = CAST(:part AS int)"
# Most venue orders fill in one trade: then the trades are the venue orders and summing them (a hash
# aggregate over every trade, a quarter of the statement's time) is skipped.
VENUE_ORDERS = f"SELECT p, o, sum(a) AS a, sum(c) AS c FROM {_TRADES} WHERE {PART.format('o')} GROUP BY p, o"
ONE_TRADE_EACH = f"SELECT * FROM {_TRADES} WHERE {PART.format('o')}"
MATCH = (
    "WITH k AS ({venue_orders}), "
    "j AS MATERIALIZED (SELECT k.p, k.o, k.a, f.ctid AS tid, f.id, f.provider, f.provider_order_id, "
    "f.amount AS booked, f.reconciled, f.executed_at, "
    "(k.p IS NOT NULL AND f.id IS NOT NULL AND f.amount = k.a "
    "AND (f.quote_amount = 0 OR abs(f.quote_amount - k.c) <= :tol)) AS same "
    "FROM k FULL JOIN (SELECT ctid, id, provider, provider_order_id, amount, quote_amount, reconciled, "
    "executed_at FROM provider_fills WHERE provider = ANY(CAST(:v AS text[])) "
    f"AND {PART.format('provider_order_id')}) f "
    "ON f.provider = k.p AND f.provider_order_id = k.o), "
    "marked AS (UPDATE provider_fills f SET reconciled = true, reconciled_at = now() "
    "WHERE f.ctid = ANY(ARRAY(SELECT tid FROM j WHERE j.same AND NOT j.reconciled)) RETURNING 1) "
    "SELECT CASE WHEN j.executed_at > :cut THEN 'later' ELSE 'venue' END, j.p, j.o, j.a, j.booked, j.id "
    "FROM j WHERE j.p IS NOT NULL AND NOT j.same "
    "UNION ALL SELECT 'ours', j.provider, j.provider_order_id, NULL, j.booked, j.id FROM j "
    "WHERE j.p IS NULL AND NOT j.reconciled AND j.executed_at <= :cut "
    "UNION ALL SELECT 'orders', NULL, NULL, NULL, count(*), NULL FROM j WHERE j.p IS NOT NULL"
)


async def explain_and_match(
    engine: AsyncEngine,
    *,
    cut_off: datetime,
    trades: Sequence[VenueTrade],
    venues: list[str],
    venue_deposits: Iterable[dict[str, Any]] = (),
    transfers: Iterable[TransferInFlight] = (),
    credited_transfers: Collection[uuid.UUID] = frozenset(),
    without_trades: Collection[str] = (),
    error: str | None = None,
) -> FillsAndFlight:
    """The in-flight items as of the cut-off and the venue trades (up to it) matched with our fills.

    A venue deposit of a float transfer's chain transaction is house money between venues, never a
    customer's. With `error` (a venue's trades could not be read) nothing is matched: the run is ERROR.
    A venue order of an order in flight is not unmatched for the part its saga has yet to book."""
    own = await transfer_tx_hashes(engine)
    deposits = [d for d in venue_deposits if normal_tx(d["tx_id"]) not in own]
    explain = in_flight(
        engine, cut_off=cut_off, trades=trades, venue_deposits=deposits, transfers=transfers,
        credited_transfers=credited_transfers, without_trades=without_trades,
    )  # fmt: skip
    if error is not None:
        return FillsAndFlight(fills=FillsRead(error=error, venues_read=venues), in_flight=await explain)
    flight, fills = await asyncio.gather(
        explain, match_fills(engine, trades=trades, venues=venues, cut_off=cut_off)
    )
    flying = {(i["venue"], i["venue_order_id"]) for i in flight.items if "venue_order_id" in i}
    fills.unmatched_venue = [
        u
        for u in fills.unmatched_venue
        if (u["venue"], u["venue_order_id"]) not in flying
        or Decimal(u.get("booked") or 0) >= Decimal(u["amount"])
    ]
    return FillsAndFlight(fills=fills, in_flight=flight)


async def match_fills(
    engine: AsyncEngine, *, trades: Sequence[VenueTrade], venues: list[str], cut_off: datetime
) -> FillsRead:
    """Match venue trades one-to-one (per venue order) with `provider_fills`; mark matched rows reconciled.

    `trades` are the venue's up to the cut-off. A venue order matches when its trades add up to the row's
    amount and quote amount. Venue trades no row explains and unreconciled rows executed before the
    cut-off that no venue trade explains are listed by id; a row that differs and was settled after the
    cut-off (its order traded on past it) is left to the next run, which reads the rest of its trades.
    """
    out = FillsRead(venues_read=list(venues))
    order_list = [t.order_id for t in trades]
    venue_ids = SEP.join([t.venue for t in trades])
    order_ids = SEP.join(order_list)
    n = len(trades)
    if n and (venue_ids.count(SEP) != n - 1 or order_ids.count(SEP) != n - 1):
        raise ValueError("a venue order id holds the list separator")  # venues' ids are printable
    params = {
        "p": venue_ids,
        "o": order_ids,
        "a": SEP.join([str(t.amount) for t in trades]),
        "c": SEP.join([str(t.cost) for t in trades]),
        "sep": SEP,
        "v": venues,
        "cut": cut_off,
        "tol": QUOTE_TOLERANCE,
    }
    # No order id twice (across venues too: a false "twice" only takes the summing path, always right).
    one_each = len(set(order_list)) == n
    statement = MATCH.format(venue_orders=ONE_TRADE_EACH if one_each else VENUE_ORDERS)

    async def match_part(part: int) -> list[Any]:
        async with engine.begin() as conn:
            await conn.execute(text(MATCH_WORK_MEM))
            rows = await conn.execute(text(statement), {**params, "parts": MATCH_PARTS, "part": part})
            return list(rows.all())

    parts = await asyncio.gather(*(match_part(i) for i in range(MATCH_PARTS)))
    problems = [p for part in parts for p in part]
    orders = sum(int(p[4]) for p in problems if p[0] == "orders")  # the venue orders read
    problems = [p for p in problems if p[0] != "orders"]
    out.matched = orders - sum(1 for p in problems if p[0] != "ours")  # every other venue order matched
    unexplained = {(p[1], p[2]) for p in problems if p[0] == "venue"}
    by_order: dict[tuple[str, str], list[VenueTrade]] = defaultdict(list)
    if unexplained:
        for t in trades:
            if (t.venue, t.order_id) in unexplained:
                by_order[(t.venue, t.order_id)].append(t)
    for side, venue, order_id, venue_amount, booked, fill_id in problems:
        if side == "later":
            continue  # its row was settled after the cut-off: the next run, which reads its trades, judges it
        if side == "ours":
            out.unmatched_ours.append(
                {"provider_fill_id": str(fill_id), "venue": venue, "venue_order_id": order_id,
                 "amount": str(booked)}
            )  # fmt: skip
            continue
        ts = by_order[(venue, order_id)]
        item = {"venue": venue, "venue_order_id": order_id, "trade_ids": [t.trade_id for t in ts],
                "symbol": ts[0].symbol, "side": ts[0].side, "amount": str(venue_amount)}  # fmt: skip
        if fill_id is not None:
            item.update({"booked": str(booked), "provider_fill_id": str(fill_id)})
        out.unmatched_venue.append(item)
    return out

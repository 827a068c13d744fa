"""Fill matching: every venue trade since the last run matched one-to-one (per venue order) with
`provider_fills`; matched rows marked reconciled, the unmatched on either side listed by id."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.reconciliation import FillsRead
from services.reconciliation.in_flight import VenueTrade

SEP = "\x1f"  # ASCII unit separator: joins the venue trades' ids into one parameter (never in an id)
QUOTE_TOLERANCE = Decimal("0.01")  # a venue's quote amount vs ours: rounding of the average price


async def match_fills(
    engine: AsyncEngine,
    *,
    trades: Iterable[VenueTrade],
    venues: list[str],
    cut_off: datetime,
    in_flight_orders: set[str],
) -> FillsRead:
    """Match venue trades one-to-one (per venue order) with `provider_fills`; mark matched rows reconciled.

    `trades` are the venue's up to the cut-off. A venue order matches when its trades add up to the row's
    amount and quote amount. Venue trades no row explains (and not of an order in flight) and unreconciled
    rows executed before the cut-off that no venue trade explains are listed by id; a row that differs and
    was settled after the cut-off (its order traded on past it) is left to the next run, which reads the
    rest of its trades. The matching runs in the database, in one statement that marks
    the matches and returns the problems, so its cost grows with the fills, not with Python round trips.
    Marking a fill is a HOT update (no index on `reconciled`, pages half free: migration 0016).
    """
    out = FillsRead(venues_read=list(venues))
    trades = list(trades)
    sums: dict[tuple[str, str], list[Decimal]] = {}  # venue order -> [amount, quote amount] of its trades
    for t in trades:
        acc = sums.get((t.venue, t.order_id))
        if acc is None:
            sums[(t.venue, t.order_id)] = [t.amount, t.cost]
        else:
            acc[0] += t.amount
            acc[1] += t.cost
    keys = list(sums)
    amounts = [str(sums[k][0]) for k in keys]
    costs = [str(sums[k][1]) for k in keys]
    venue_ids = [k[0] for k in keys]
    order_ids = [k[1] for k in keys]
    if SEP in "".join(venue_ids) or SEP in "".join(order_ids):
        raise ValueError("a venue order id holds the list separator")  # venues' ids are printable
    # Each list goes as one text joined by a separator the database splits (`string_to_array`): adapting
    # 50,000 list items one by one in the driver cost more than the statement itself (bench/recon.py).
    params = {
        "p": SEP.join(venue_ids),
        "o": SEP.join(order_ids),
        "a": SEP.join(amounts),
        "c": SEP.join(costs),
        "sep": SEP,
        "v": venues,
        "cut": cut_off,
        "tol": QUOTE_TOLERANCE,
    }
    # One statement: the venue orders joined once with their rows (`j`), the matches marked reconciled by a
    # data-modifying CTE, and the problems on both sides returned. The outer query reads the snapshot from
    # before the update, which is what both sides need (a row marked now is explained by a venue order).
    # One statement, one pass over the venues' fills: the venue orders (`k`) fully joined with our rows
    # (`j`: a pair is a candidate match, a venue order alone is unexplained, a row of ours alone and
    # unreconciled before the cut-off is unmatched); the matches are marked by a data-modifying CTE (by
    # row address, no second join). The outer query reads the snapshot from before the update, which is
    # what both sides need.
    statement = (
        "WITH k AS MATERIALIZED (SELECT * FROM unnest(string_to_array(:p, :sep), string_to_array(:o, :sep), "
        "CAST(string_to_array(:a, :sep) AS numeric[]), CAST(string_to_array(:c, :sep) AS numeric[])) "
        "AS k(p, o, a, c)), "
        "j AS MATERIALIZED (SELECT k.p, k.o, k.a, f.ctid AS tid, f.id, f.provider, f.provider_order_id, "
        "f.amount AS booked, f.reconciled, f.executed_at, "
        "(k.p IS NOT NULL AND f.id IS NOT NULL AND f.amount = k.a "
        "AND (f.quote_amount = 0 OR abs(f.quote_amount - k.c) <= :tol)) AS same "
        "FROM k FULL JOIN (SELECT ctid, * FROM provider_fills WHERE provider = ANY(CAST(:v AS text[]))) f "
        "ON f.provider = k.p AND f.provider_order_id = k.o), "
        "marked AS (UPDATE provider_fills f SET reconciled = true, reconciled_at = now() FROM j "
        "WHERE j.same AND NOT j.reconciled AND f.ctid = j.tid RETURNING 1) "
        "SELECT CASE WHEN j.executed_at > :cut THEN 'later' ELSE 'venue' END, j.p, j.o, j.a, j.booked, j.id "
        "FROM j WHERE j.p IS NOT NULL AND NOT j.same "
        "UNION ALL SELECT 'ours', j.provider, j.provider_order_id, NULL, j.booked, j.id FROM j "
        "WHERE j.p IS NULL AND NOT j.reconciled AND j.executed_at <= :cut"
    )
    async with engine.begin() as conn:
        problems = (await conn.execute(text(statement), params)).all()
    out.matched = len(keys) - sum(1 for p in problems if p[0] != "ours")  # every other venue order matched
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
                {
                    "provider_fill_id": str(fill_id),
                    "venue": venue,
                    "venue_order_id": order_id,
                    "amount": str(booked),
                }
            )
            continue
        if order_id in in_flight_orders and (booked is None or booked < venue_amount):
            continue  # the rest is in flight, booked when its order settles
        ts = by_order[(venue, order_id)]
        item = {"venue": venue, "venue_order_id": order_id, "trade_ids": [t.trade_id for t in ts],
                "symbol": ts[0].symbol, "side": ts[0].side, "amount": str(venue_amount)}  # fmt: skip
        if fill_id is not None:
            item.update({"booked": str(booked), "provider_fill_id": str(fill_id)})
        out.unmatched_venue.append(item)
    return out

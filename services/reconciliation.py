"""Reconciliation domain logic (issue 20, seed §C.5, §14): the books against the venues and the bank.

No Temporal and no HTTP here; activities/reconciliation.py reads the sources and calls these functions.

For one cut-off, per currency:

    provider   = what every venue, the OTC desk and the bank say they hold for us
    ledger     = our house asset accounts (`provider:<venue>`, `bank:cash`) summed from the entries
                 created up to the cut-off (never the live balances, so postings during the run cause no
                 false drift). House accounts are kept from the liability side, so an asset is minus its sum.
    in-flight  = movements our sagas know about that the provider already shows and the books not yet
                 (a venue trade of an order not yet settled, a venue deposit not yet credited; minus a
                 withdrawal sent and not yet completed), each listed by id
    drift      = provider - ledger - in-flight, compared with the asset's tolerance

A drift beyond tolerance, a venue trade that no `provider_fills` row explains (or the reverse), or a
completed withdrawal absent on-chain halts that currency's withdrawals at once (the existing
`currency_halts` row every withdrawal saga obeys, with a customer-safe reason), and a
`reconciliation_halts` row records why and which run. A source that cannot be read makes the currency
ERROR (never MATCHED) and, after several ERROR runs in a row, alerts without halting. Resuming needs
`clean_runs_to_resume` clean runs in a row and two different staff acknowledging with a reason; two
staff can also override. Everything is audited.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import CRYPTO, SCALES
from models.market import split_symbol
from models.reconciliation import (
    CurrencyOutcome,
    FillsRead,
    InFlightRead,
    LedgerRead,
    RecordInput,
    RunResult,
    RunStatus,
)
from services.errors import DomainError
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.payments import audit
from services.treasury import TransferInFlight

log = logging.getLogger("reconciliation")
ZERO = Decimal(0)
BANK_SOURCE = "bank"
WALLET_SOURCE = "wallet"  # our own hot wallets on-chain (self-custody), house account `wallet:hot`
HOT_WALLET = "wallet:hot"
SEP = "\x1f"  # ASCII unit separator: joins the venue trades' ids into one parameter (never in an id)
QUOTE_TOLERANCE = Decimal("0.01")  # a venue's quote amount vs ours: rounding of the average price
CAPITAL = "treasury:capital"  # the house's own money: the other side of a float funding


def customer_message(currency: str) -> str:
    """What customers see while a currency is halted by reconciliation: never the drift."""
    return f"withdrawals of {currency} are paused for checks"


class ResumeRefused(DomainError):
    """The acknowledgement cannot be taken (same staff twice, not halted, not enough clean runs yet).
    Tell the staff member why; nothing was written."""

    default_code = "resume_refused"
    status = 409


# --- funding: the floats the house puts at a venue or the bank --------------------------------------


async def book_float_funding(
    ledger: Ledger, *, source: str, currency: str, amount: Decimal, funding_id: uuid.UUID
) -> None:
    """Book house money placed at a source (venue float, bank opening balance) against capital, so the
    books show what the source holds. Keyed by `funding_id`: booking twice posts once."""
    code = {BANK_SOURCE: HouseAccount.BANK_CASH, WALLET_SOURCE: HOT_WALLET}.get(
        source
    ) or HouseAccount.provider(source)
    await ledger.post(
        Posting(
            reference_type="float_funding",
            reference_id=funding_id,
            step=f"{source}:{currency}",
            kind="float_funding",
            legs=[Leg(House(code), currency, -amount), Leg(House(CAPITAL), currency, amount)],
        )
    )


# --- ledger as of the cut-off -----------------------------------------------------------------------


def _source_of(code: str) -> str | None:
    if code == HouseAccount.BANK_CASH:
        return BANK_SOURCE
    if code == HOT_WALLET:
        return WALLET_SOURCE
    if code.startswith("provider:"):
        return code.removeprefix("provider:")
    return None


async def ledger_at(engine: AsyncEngine, cut_off: datetime) -> LedgerRead:
    """House assets per source and customer liabilities per currency, as the entries up to `cut_off` make
    them (entries posted during the run are taken off, so they cause no false drift)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                # Each account's balance less its entries after the cut-off (an index range per account on
                # (account_id, created_at)): the same figure as summing every entry up to the cut-off, since
                # an account's balance is the sum of its entries (ledger.verify checks it), without
                # reading the whole journal. The statement's snapshot sees balance and entries together.
                text(
                    "SELECT a.kind, CASE WHEN a.kind = 'house' THEN a.code END, a.currency, "
                    "sum(a.balance - coalesce((SELECT sum(e.amount) FROM ledger_entries e "
                    "WHERE e.account_id = a.id AND e.created_at > :cut), 0)) "
                    "FROM accounts a WHERE a.kind = 'customer' OR a.code IN (:bank, :wallet) "
                    "OR a.code LIKE 'provider:%' "
                    "GROUP BY 1, 2, 3"
                ),
                {"cut": cut_off, "bank": HouseAccount.BANK_CASH, "wallet": HOT_WALLET},
            )
        ).all()
    out = LedgerRead()
    for kind, code, currency, total in rows:
        if kind == "customer":
            out.liabilities[currency] = out.liabilities.get(currency, ZERO) + total
            continue
        source = _source_of(code)
        if source is not None:
            out.assets.setdefault(source, {})[currency] = -total
    return out


# --- in-flight items --------------------------------------------------------------------------------


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


async def in_flight(
    engine: AsyncEngine,
    *,
    trades: Iterable[VenueTrade],
    venue_deposits: Iterable[dict[str, Any]],
    transfers: Iterable[TransferInFlight] = (),
    credited_transfers: Collection[uuid.UUID] = frozenset(),
) -> InFlightRead:
    """What the sources show and the books do not yet, each item by id.

    - venue trades of our orders that no `provider_fills` row covers yet (the order saga settles them);
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
        # Our orders still in their saga are few; the venue trades are many (every trade since the last
        # run): pick the trades of live orders out in one pass. Settled orders are matched by the fills
        # check; strangers are unmatched there.
        live_orders = await _live_orders(conn)
        by_order: dict[tuple[str, str], list[VenueTrade]] = defaultdict(list)
        if live_orders:
            for t in trades:
                key = (t.venue, t.order_id)
                if key in live_orders:
                    by_order[key].append(t)
        covered = await _fills_by_order(conn, set(by_order))
        for key, ts in by_order.items():
            booked = covered.get(key)
            venue_amount = sum((t.amount for t in ts), ZERO)
            booked_amount = booked[0] if booked else ZERO
            if venue_amount <= booked_amount:
                continue
            # Only the part not yet booked is in flight (a partial settlement books the rest later).
            share = (venue_amount - booked_amount) / venue_amount
            for t in ts:
                for cur, delta in t.deltas().items():
                    totals[cur] += delta * share
            out.items.append(
                {"kind": "order", "id": str(live_orders[key]), "venue": key[0], "venue_order_id": key[1]}
            )
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
                    {
                        "kind": "deposit",
                        "id": dep["tx_id"],
                        "currency": dep["currency"],
                        "venue": dep["venue"],
                    }
                )
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
    out.totals = {c: v for c, v in totals.items() if v != 0}
    return out


async def _fills_by_order(
    conn: AsyncConnection, keys: set[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Decimal, uuid.UUID]]:
    if not keys:
        return {}
    rows = (
        await conn.execute(
            text(
                "SELECT f.provider, f.provider_order_id, f.amount, f.id FROM provider_fills f "
                "JOIN unnest(CAST(:p AS text[]), CAST(:o AS text[])) AS k(p, o) "
                "ON f.provider = k.p AND f.provider_order_id = k.o"
            ),
            {"p": [k[0] for k in keys], "o": [k[1] for k in keys]},
        )
    ).all()
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


async def _live_orders(conn: AsyncConnection) -> dict[tuple[str, str], uuid.UUID]:
    """Our orders still being worked by their saga (not final), by venue and venue order id."""
    rows = (
        await conn.execute(
            text(
                "SELECT routed_to_provider, provider_order_id, id FROM orders "
                "WHERE status NOT IN ('FILLED', 'PARTIALLY_FILLED', 'CANCELLED', 'EXPIRED', 'REJECTED', "
                "'FAILED') AND provider_order_id IS NOT NULL"
            )
        )
    ).all()
    return {(r[0], r[1]): r[2] for r in rows}


# --- fills ------------------------------------------------------------------------------------------


async def match_fills(
    engine: AsyncEngine,
    *,
    trades: Iterable[VenueTrade],
    venues: list[str],
    cut_off: datetime,
    in_flight_orders: set[str],
) -> FillsRead:
    """Match venue trades one-to-one (per venue order) with `provider_fills`; mark matched rows reconciled.

    A venue order matches when its trades add up to the row's amount and quote amount. Venue trades no
    row explains (and not of an order in flight) and unreconciled rows executed before the cut-off that no
    venue trade explains are listed by id. The matching runs in the database, in one statement that marks
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
        "SELECT 'venue', j.p, j.o, j.a, j.booked, j.id FROM j WHERE j.p IS NOT NULL AND NOT j.same "
        "UNION ALL SELECT 'ours', j.provider, j.provider_order_id, NULL, j.booked, j.id FROM j "
        "WHERE j.p IS NULL AND NOT j.reconciled AND j.executed_at <= :cut"
    )
    async with engine.begin() as conn:
        problems = (await conn.execute(text(statement), params)).all()
    out.matched = len(keys) - sum(1 for p in problems if p[0] == "venue")  # every other venue order matched
    unexplained = {(p[1], p[2]) for p in problems if p[0] == "venue"}
    by_order: dict[tuple[str, str], list[VenueTrade]] = defaultdict(list)
    if unexplained:
        for t in trades:
            if (t.venue, t.order_id) in unexplained:
                by_order[(t.venue, t.order_id)].append(t)
    for side, venue, order_id, venue_amount, booked, fill_id in problems:
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


# --- the chain -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainItem:
    """A transaction our books say happened on a chain: a completed withdrawal or a credited deposit."""

    kind: str  # "withdrawal" | "deposit"
    id: str
    currency: str
    txid: str
    address: str
    amount: Decimal


async def chain_items(engine: AsyncEngine, *, since: datetime, currencies: Iterable[str]) -> list[ChainItem]:
    """Completed crypto withdrawals and credited crypto deposits since `since`, to look up on-chain."""
    wanted = list(currencies)
    async with engine.connect() as conn:
        ws = (
            await conn.execute(
                text(
                    "SELECT id, currency, tx_hash, destination_address, amount FROM withdrawals "
                    "WHERE status = 'COMPLETED' AND currency = ANY(CAST(:c AS text[])) AND completed_at >= :s"
                ),
                {"c": wanted, "s": since},
            )
        ).all()
        ds = (
            await conn.execute(
                text(
                    "SELECT id, currency, provider_tx_id, details->>'address', amount FROM deposits "
                    "WHERE payment_method = 'CRYPTO' AND status IN ('CONFIRMED', 'SUSPENSE') "
                    "AND currency = ANY(CAST(:c AS text[])) AND created_at >= :s"
                ),
                {"c": wanted, "s": since},
            )
        ).all()
    return [ChainItem("withdrawal", str(r[0]), r[1], r[2] or "", r[3] or "", r[4]) for r in ws] + [
        ChainItem("deposit", str(r[0]), r[1], r[2] or "", r[3] or "", r[4]) for r in ds
    ]


def judge_chain_item(
    item: ChainItem, found: tuple[str, Decimal, int] | None, min_confirmations: int
) -> dict[str, Any] | None:
    """None when the chain agrees with our books; else what is wrong, for the run's details.

    `found` is (destination, amount, confirmations) as the chain reports the transaction, None if absent."""
    base = {"kind": item.kind, "id": item.id, "currency": item.currency, "txid": item.txid}
    if found is None:
        return {**base, "problem": "absent on-chain"}
    to, amount, confirmations = found
    if to.lower() != item.address.lower() and item.address:
        return {**base, "problem": "different destination", "on_chain_to": to}
    if amount != item.amount:
        return {**base, "problem": "different amount", "on_chain_amount": str(amount)}
    if item.kind == "deposit" and confirmations < min_confirmations:
        return {**base, "problem": f"{confirmations} confirmation(s), {min_confirmations} needed"}
    return None


# --- assessing and recording a run ------------------------------------------------------------------


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


# --- resuming: clean runs and two staff -------------------------------------------------------------


async def acknowledge(
    engine: AsyncEngine,
    *,
    currency: str,
    staff_id: uuid.UUID,
    reason: str,
    override: bool,
    policy: Policy,
) -> bool:
    """Record one staff acknowledgement; lift the halt when it completes the resume. Returns whether the
    currency is resumed.

    Resume: `clean_runs_to_resume` clean runs since the halt and two different staff acknowledging.
    Override: two different staff, whatever the runs say (audited as such)."""
    if not reason.strip():
        raise ResumeRefused("a reason is required")
    kind = "override" if override else "resume"
    async with engine.begin() as conn:
        halt = (
            await conn.execute(
                text("SELECT run_id, clean_runs FROM reconciliation_halts WHERE currency = :c FOR UPDATE"),
                {"c": currency},
            )
        ).first()
        if halt is None:
            raise ResumeRefused(f"{currency} is not halted by reconciliation")
        run_id, clean = halt
        if not override and clean < policy.clean_runs_to_resume:
            raise ResumeRefused(
                f"{currency} needs {policy.clean_runs_to_resume} clean runs in a row before resuming; "
                f"{clean} so far"
            )
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO reconciliation_acks (id, currency, halt_run_id, staff_id, kind, reason) "
                    "VALUES (:id, :c, :r, :s, :k, :why) "
                    "ON CONFLICT (currency, halt_run_id, staff_id) DO NOTHING "
                    "RETURNING 1"
                ),
                {"id": uuid.uuid4(), "c": currency, "r": run_id, "s": staff_id, "k": kind, "why": reason},
            )
        ).first()
        if inserted is None:
            raise ResumeRefused("this staff member has already acknowledged this halt; a second person must")
        await audit(
            conn, f"reconciliation.{kind}_ack", actor_id=staff_id, actor_type="staff", target_type="currency",
            target_id=currency, run_id=str(run_id), reason=reason,
        )  # fmt: skip
        acks = (
            await conn.execute(
                text(
                    "SELECT count(DISTINCT staff_id) FILTER (WHERE kind = :k), count(DISTINCT staff_id) "
                    "FROM reconciliation_acks WHERE currency = :c AND halt_run_id = :r"
                ),
                {"c": currency, "r": run_id, "k": kind},
            )
        ).one()
        if acks[1] < 2 or (override and acks[0] < 2):
            return False
        await conn.execute(text("DELETE FROM reconciliation_halts WHERE currency = :c"), {"c": currency})
        await conn.execute(
            text("DELETE FROM currency_halts WHERE currency = :c AND reason = :r"),
            {"c": currency, "r": customer_message(currency)},
        )
        await audit(
            conn, "reconciliation.resume", actor_id=staff_id, actor_type="staff", target_type="currency",
            target_id=currency, run_id=str(run_id), override=override,
        )  # fmt: skip
        log.warning("reconciliation halt of %s lifted (%s) after two acknowledgements", currency, kind)
    return True

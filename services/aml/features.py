"""The facts the rules look at, from SQL window aggregates over the customer's history: one query per
evaluation, whatever the number of rules (each kind's aggregate over its rule's window).

Times are the rows' `created_at` (deposits: when credited; withdrawals: when requested) and trades'
`executed_at`, all indexed with the customer's id first. Only credited deposits (CONFIRMED) count, and
only withdrawals that hold or moved money (not refused, rejected, cancelled or failed).

Pound values: GBP amounts as they are; crypto withdrawals at the `notional_gbp` fixed when they were
requested; trades at amount × price (every symbol is quoted in GBP); crypto deposits at the
`notional_gbp` in their details when the poller recorded one, else not counted (the value rules then
under-count crypto deposits; the large-transaction rule sees them at the withdrawal or trade that
follows).

A deposit's source is its payer's bank account (sort code and account number) or, for crypto, the
sending address when the venue reports it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.aml import AmlSubjectType
from services.aml.rules import (
    DepositThenWithdrawalParams,
    HighRiskCountryParams,
    ManySourcesParams,
    RapidTradingParams,
    RuleKind,
    RuleSet,
    ValueInWindowParams,
)
from services.limits import COUNTED_WITHDRAWAL_STATUSES

# SQL fragments shared with the sweep (services/aml/sweep.py).
DEPOSIT_GBP = (
    "CASE WHEN d.currency = 'GBP' THEN d.amount "
    "ELSE coalesce(CAST(nullif(d.details->>'notional_gbp', '') AS numeric), 0) END"
)
DEPOSIT_SOURCE = (
    "coalesce(nullif(d.details->>'payer_sort_code', '') || '/' "
    "|| nullif(d.details->>'payer_account_number', ''), "
    "nullif(d.details->>'payer_iban', ''), nullif(d.details->>'from_address', ''))"
)
DEPOSIT_PAYER_COUNTRY = (
    "upper(coalesce(nullif(d.details->>'payer_country', ''), "
    "CASE WHEN nullif(d.details->>'payer_iban', '') IS NOT NULL THEN left(d.details->>'payer_iban', 2) END, "
    "CASE WHEN nullif(d.details->>'payer_sort_code', '') IS NOT NULL THEN 'GB' END))"
)
WITHDRAWAL_GBP = "coalesce(w.notional_gbp, CASE WHEN w.currency = 'GBP' THEN w.amount ELSE 0 END)"
WITHDRAWAL_COUNTED = "w.status IN (" + ", ".join(f"'{s}'" for s in COUNTED_WITHDRAWAL_STATUSES) + ")"
TRADE_GBP = "t.amount * t.price"

# The longest a window may be when a kind's rule is off: its aggregate then scans nothing.
_OFF = 0


@dataclass(frozen=True)
class Windows:
    """Each kind's window, from the version's enabled rules (0: the rule is off, nothing is scanned)."""

    deposit_then_withdrawal_min: int = _OFF
    round_trip_min: int = _OFF
    sources_hours: int = _OFF
    payer_country_days: int = _OFF
    value_hours: int = _OFF
    wants_countries: bool = False
    wants_subject: bool = False

    @classmethod
    def of(cls, rules: RuleSet) -> Windows:
        def p(kind: RuleKind) -> object | None:
            rule = rules.enabled(kind)
            return None if rule is None else rule.params

        dtw, rt, ms, hr, val = (
            p(RuleKind.DEPOSIT_THEN_WITHDRAWAL),
            p(RuleKind.RAPID_TRADING),
            p(RuleKind.MANY_SOURCES),
            p(RuleKind.HIGH_RISK_COUNTRY),
            p(RuleKind.VALUE_IN_WINDOW),
        )
        return cls(
            deposit_then_withdrawal_min=dtw.window_minutes
            if isinstance(dtw, DepositThenWithdrawalParams)
            else 0,
            round_trip_min=rt.window_minutes if isinstance(rt, RapidTradingParams) else 0,
            sources_hours=ms.window_hours if isinstance(ms, ManySourcesParams) else 0,
            payer_country_days=hr.window_days
            if isinstance(hr, HighRiskCountryParams) and "payer_bank" in hr.check
            else 0,
            value_hours=val.window_hours if isinstance(val, ValueInWindowParams) else 0,
            wants_countries=isinstance(hr, HighRiskCountryParams),
            wants_subject=rules.enabled(RuleKind.LARGE_TRANSACTION) is not None,
        )

    @property
    def nothing(self) -> bool:
        return self == Windows()


@dataclass
class Features:
    """What the rules see of one customer at one moment (and of the subject being evaluated)."""

    last_deposit_at: datetime | None = None
    round_trips: int = 0
    distinct_sources: int = 0
    value_gbp: Decimal = Decimal(0)
    subject_gbp: Decimal | None = None
    nationality: str | None = None
    residence: str | None = None
    payer_countries: list[str] = field(default_factory=list)


FEATURES_SQL = f"""
SELECT
  (SELECT max(d.created_at) FROM deposits d
    WHERE :dtw > 0 AND d.user_id = :u AND d.status = 'CONFIRMED'
      AND d.created_at > :at - make_interval(mins => :dtw) AND d.created_at <= :at) AS last_deposit_at,
  (SELECT coalesce(sum(least(x.buys, x.sells)), 0) FROM (
      SELECT count(*) FILTER (WHERE t.side = 'BUY') AS buys, count(*) FILTER (WHERE t.side = 'SELL') AS sells
      FROM trades t
      WHERE :rt > 0 AND t.user_id = :u
        AND t.executed_at > :at - make_interval(mins => :rt) AND t.executed_at <= :at
      GROUP BY t.symbol) x) AS round_trips,
  (SELECT count(DISTINCT {DEPOSIT_SOURCE}) FROM deposits d
    WHERE :ms > 0 AND d.user_id = :u AND d.status = 'CONFIRMED'
      AND d.created_at > :at - make_interval(hours => :ms) AND d.created_at <= :at) AS distinct_sources,
  (SELECT coalesce(sum({DEPOSIT_GBP}), 0) FROM deposits d
    WHERE :val > 0 AND d.user_id = :u AND d.status = 'CONFIRMED'
      AND d.created_at > :at - make_interval(hours => :val) AND d.created_at <= :at)
  + (SELECT coalesce(sum({WITHDRAWAL_GBP}), 0) FROM withdrawals w
    WHERE :val > 0 AND w.user_id = :u AND {WITHDRAWAL_COUNTED}
      AND w.created_at > :at - make_interval(hours => :val) AND w.created_at <= :at)
  + (SELECT coalesce(sum({TRADE_GBP}), 0) FROM trades t
    WHERE :val > 0 AND t.user_id = :u
      AND t.executed_at > :at - make_interval(hours => :val) AND t.executed_at <= :at) AS value_gbp,
  (SELECT ARRAY[k.details->>'nationality', k.details->'address'->>'country'] FROM kyc_submissions k
    WHERE :countries AND k.user_id = :u AND k.tier = 1 AND k.status <> 'REJECTED'
    ORDER BY k.created_at DESC LIMIT 1) AS kyc_countries,
  (SELECT array_agg(DISTINCT {DEPOSIT_PAYER_COUNTRY}) FROM deposits d
    WHERE :pc > 0 AND d.user_id = :u AND d.status = 'CONFIRMED'
      AND d.created_at > :at - make_interval(days => :pc) AND d.created_at <= :at) AS payer_countries,
  CASE WHEN NOT :subj THEN NULL
    WHEN :stype = 'withdrawal' THEN
      (SELECT {WITHDRAWAL_GBP} FROM withdrawals w WHERE w.id = CAST(:sid AS uuid))
    WHEN :stype = 'deposit' THEN
      (SELECT {DEPOSIT_GBP} FROM deposits d WHERE d.id = CAST(:sid AS uuid))
    WHEN :stype = 'trade' THEN
      (SELECT sum({TRADE_GBP}) FROM trades t WHERE t.order_id = CAST(:sid AS uuid))
  END AS subject_gbp
"""


async def features_for(
    conn: AsyncConnection,
    windows: Windows,
    *,
    user_id: uuid.UUID,
    subject_type: AmlSubjectType,
    subject_id: str,
    at: datetime,
) -> Features:
    """The customer's features at `at` over `windows`, in one query."""
    if windows.nothing:
        return Features()
    row = (
        await conn.execute(
            text(FEATURES_SQL),
            {
                "u": user_id,
                "at": at,
                "dtw": windows.deposit_then_withdrawal_min,
                "rt": windows.round_trip_min,
                "ms": windows.sources_hours,
                "val": windows.value_hours,
                "pc": windows.payer_country_days,
                "countries": windows.wants_countries,
                "subj": windows.wants_subject and subject_type != AmlSubjectType.CUSTOMER,
                "stype": subject_type.value,
                "sid": subject_id if subject_type != AmlSubjectType.CUSTOMER else None,
            },
        )
    ).one()
    kyc = row.kyc_countries or [None, None]
    return Features(
        last_deposit_at=row.last_deposit_at,
        round_trips=int(row.round_trips),
        distinct_sources=int(row.distinct_sources),
        value_gbp=Decimal(row.value_gbp),
        subject_gbp=None if row.subject_gbp is None else Decimal(row.subject_gbp),
        nationality=(kyc[0] or None),
        residence=(kyc[1] or None),
        payer_countries=[c for c in (row.payer_countries or []) if c],
    )

"""The scheduled sweep: the window rules over every customer at once, set-based.

Transaction hooks see a customer when they move money; the sweep also catches what builds up between
hooks (round trips, sources, the 24 h value) and what no hook saw (crypto deposits credited by the
poller). One query per version computes every active customer's features over the version's windows
(the same aggregates as services/aml/features.py, grouped by customer); the rules for subject `customer`
are applied in Python; hits are recorded as alerts with subject id `<customer id>/<day>`, so a sweep
re-run the same day raises nothing twice and a customer is alerted at most once per rule per day.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import AmlSubjectType
from services.aml.alerts import record_alerts
from services.aml.evaluation import evaluate, rules_for
from services.aml.features import (
    DEPOSIT_GBP,
    DEPOSIT_PAYER_COUNTRY,
    DEPOSIT_SOURCE,
    TRADE_GBP,
    WITHDRAWAL_COUNTED,
    WITHDRAWAL_GBP,
    Features,
    Windows,
)
from services.aml.monitor import version_row
from services.aml.versions import ActiveVersion, active_versions


@dataclass(frozen=True)
class SweepDone:
    customers: int
    alerts: int


SWEEP_SQL = f"""
WITH
rt AS (
  SELECT x.user_id, sum(least(x.buys, x.sells)) AS round_trips FROM (
    SELECT t.user_id, count(*) FILTER (WHERE t.side = 'BUY') AS buys,
           count(*) FILTER (WHERE t.side = 'SELL') AS sells
    FROM trades t
    WHERE :rt > 0 AND t.executed_at > :at - make_interval(mins => :rt) AND t.executed_at <= :at
    GROUP BY t.user_id, t.symbol) x
  GROUP BY x.user_id),
src AS (
  SELECT d.user_id, count(DISTINCT {DEPOSIT_SOURCE}) AS sources FROM deposits d
  WHERE :ms > 0 AND d.status = 'CONFIRMED' AND d.user_id IS NOT NULL
    AND d.created_at > :at - make_interval(hours => :ms) AND d.created_at <= :at
  GROUP BY d.user_id),
val AS (
  SELECT v.user_id, sum(v.gbp) AS value_gbp FROM (
    SELECT d.user_id, {DEPOSIT_GBP} AS gbp FROM deposits d
    WHERE :val > 0 AND d.status = 'CONFIRMED' AND d.user_id IS NOT NULL
      AND d.created_at > :at - make_interval(hours => :val) AND d.created_at <= :at
    UNION ALL
    SELECT w.user_id, {WITHDRAWAL_GBP} FROM withdrawals w
    WHERE :val > 0 AND {WITHDRAWAL_COUNTED}
      AND w.created_at > :at - make_interval(hours => :val) AND w.created_at <= :at
    UNION ALL
    SELECT t.user_id, {TRADE_GBP} FROM trades t
    WHERE :val > 0 AND t.executed_at > :at - make_interval(hours => :val) AND t.executed_at <= :at) v
  GROUP BY v.user_id),
pc AS (
  SELECT d.user_id, array_agg(DISTINCT {DEPOSIT_PAYER_COUNTRY}) AS countries FROM deposits d
  WHERE :pc > 0 AND d.status = 'CONFIRMED' AND d.user_id IS NOT NULL
    AND d.created_at > :at - make_interval(days => :pc) AND d.created_at <= :at
  GROUP BY d.user_id),
active AS (
  SELECT user_id FROM rt UNION SELECT user_id FROM src
  UNION SELECT user_id FROM val UNION SELECT user_id FROM pc)
SELECT a.user_id, coalesce(rt.round_trips, 0) AS round_trips, coalesce(src.sources, 0) AS sources,
       coalesce(val.value_gbp, 0) AS value_gbp, pc.countries, k.kyc_countries
FROM active a
LEFT JOIN rt ON rt.user_id = a.user_id
LEFT JOIN src ON src.user_id = a.user_id
LEFT JOIN val ON val.user_id = a.user_id
LEFT JOIN pc ON pc.user_id = a.user_id
LEFT JOIN LATERAL (
  SELECT ARRAY[s.details->>'nationality', s.details->'address'->>'country'] AS kyc_countries
  FROM kyc_submissions s
  WHERE :countries AND s.user_id = a.user_id AND s.tier = 1 AND s.status <> 'REJECTED'
  ORDER BY s.created_at DESC LIMIT 1) k ON true
"""


async def customer_features(
    conn: AsyncConnection, windows: Windows, at: datetime
) -> dict[uuid.UUID, Features]:
    """Every customer active in the windows, with the features the customer rules read."""
    rows = (
        await conn.execute(
            text(SWEEP_SQL),
            {
                "at": at,
                "rt": windows.round_trip_min,
                "ms": windows.sources_hours,
                "val": windows.value_hours,
                "pc": windows.payer_country_days,
                "countries": windows.wants_countries,
            },
        )
    ).all()
    found = {}
    for r in rows:
        kyc = r.kyc_countries or [None, None]
        found[r.user_id] = Features(
            round_trips=int(r.round_trips),
            distinct_sources=int(r.sources),
            value_gbp=Decimal(r.value_gbp),
            nationality=kyc[0] or None,
            residence=kyc[1] or None,
            payer_countries=[c for c in (r.countries or []) if c],
        )
    return found


def customer_subject_id(user_id: uuid.UUID, at: datetime) -> str:
    return f"{user_id}/{at:%Y-%m-%d}"


async def sweep_version(session: AsyncSession, version: ActiveVersion, at: datetime) -> SweepDone:
    """One version's customer rules over every active customer; alerts recorded in `session`."""
    subject = AmlSubjectType.CUSTOMER
    if not rules_for(version.rules, subject):
        return SweepDone(0, 0)
    conn = await session.connection()
    # Only the customer rules' windows: a transaction-only rule scans nothing here.
    customer_rules = version.rules.model_copy(
        update={"rules": [r for r in version.rules.rules if subject in r.applies_to]}
    )
    features = await customer_features(conn, Windows.of(customer_rules), at)
    alerts = 0
    row = version_row(version)
    for user_id, f in features.items():
        result = evaluate(version.rules, f, subject, at)
        if not result.hits:
            continue
        await record_alerts(
            session,
            user_id=user_id,
            subject_type=subject,
            subject_id=customer_subject_id(user_id, at),
            hits=result.hits,
            rule_version=row,
            outcome=result.outcome,
        )
        alerts += len(result.hits)
    return SweepDone(len(features), alerts)


async def sweep(engine: AsyncEngine, at: datetime) -> SweepDone:
    """Every published version's customer rules at `at`, in one transaction."""
    customers = alerts = 0
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for version in await active_versions(await session.connection()):
            done = await sweep_version(session, version, at)
            customers = max(customers, done.customers)
            alerts += done.alerts
        await session.commit()
    return SweepDone(customers, alerts)

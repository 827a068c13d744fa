"""Backtest: what a rule set version would have raised on the history since a date, next to what the
live version raised.

Every transaction since `since` (withdrawals requested, deposits credited, orders with settled trades)
is evaluated under the version at the transaction's own moment, exactly as the live hooks evaluate it
(services/aml/monitor.py), so a backtest of the live version reproduces the live alerts of every
transaction that was screened live. Nothing is written. The scheduled sweep's customer alerts are not
replayed here (their subject is a day, not a transaction).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.aml import AmlSubjectType
from services.aml.monitor import evaluate_version
from services.aml.versions import ActiveVersion, active_versions, version_by_label

SUBJECTS_SQL = """
SELECT 'withdrawal' AS kind, CAST(w.id AS text) AS id, w.user_id, w.created_at AS at FROM withdrawals w
WHERE w.created_at >= :since AND (CAST(:u AS uuid) IS NULL OR w.user_id = CAST(:u AS uuid))
UNION ALL
SELECT 'deposit', CAST(d.id AS text), d.user_id, d.created_at FROM deposits d
WHERE d.created_at >= :since AND d.status = 'CONFIRMED' AND d.user_id IS NOT NULL
  AND (CAST(:u AS uuid) IS NULL OR d.user_id = CAST(:u AS uuid))
UNION ALL
SELECT 'trade', CAST(t.order_id AS text), t.user_id, max(t.executed_at) FROM trades t
WHERE (CAST(:u AS uuid) IS NULL OR t.user_id = CAST(:u AS uuid))
GROUP BY t.order_id, t.user_id HAVING max(t.executed_at) >= :since
ORDER BY at
"""


@dataclass
class SubjectResult:
    subject_type: str
    subject_id: str
    user_id: uuid.UUID
    at: datetime
    would_raise: list[str] = field(default_factory=list)
    outcome: str = "approve"
    live_raised: list[str] = field(default_factory=list)
    live_outcome: str | None = None

    @property
    def agrees(self) -> bool:
        return sorted(self.would_raise) == sorted(self.live_raised)


@dataclass
class BacktestReport:
    version: str
    live_version: str | None
    since: datetime
    subjects: list[SubjectResult] = field(default_factory=list)

    @property
    def differing(self) -> list[SubjectResult]:
        return [s for s in self.subjects if not s.agrees]

    def lines(self) -> Sequence[str]:
        """A plain-text report: totals, then each transaction where either version raised something."""
        would = sum(len(s.would_raise) for s in self.subjects)
        live = sum(len(s.live_raised) for s in self.subjects)
        out = [
            f"backtest of {self.version} since {self.since.isoformat()} "
            f"against live {self.live_version or '(none)'}: {len(self.subjects)} transactions, "
            f"{would} alerts would be raised, {live} were raised live, "
            f"{len(self.differing)} transactions differ",
            "subject\tid\tat\twould raise (outcome)\traised live (outcome)",
        ]
        for s in self.subjects:
            if s.would_raise or s.live_raised:
                out.append(
                    f"{s.subject_type}\t{s.subject_id}\t{s.at.isoformat()}\t"
                    f"{','.join(s.would_raise) or '-'} ({s.outcome})\t"
                    f"{','.join(s.live_raised) or '-'} ({s.live_outcome or 'approve'})"
                    + ("" if s.agrees else "\t*")
                )
        return out


async def backtest(
    engine: AsyncEngine, version: str, since: datetime, *, user_id: uuid.UUID | None = None
) -> BacktestReport:
    """Evaluate `version` on every transaction since `since` (one customer's with `user_id`)."""
    async with engine.connect() as conn:
        candidate = await version_by_label(conn, version)
        live: ActiveVersion | None = next((v for v in await active_versions(conn) if not v.shadow), None)
        report = BacktestReport(version, live.rules.version if live else None, since)
        subjects = (await conn.execute(text(SUBJECTS_SQL), {"since": since, "u": user_id})).all()
        raised: dict[tuple[str, str], tuple[list[str], str]] = {}
        if live is not None:
            rows = (
                await conn.execute(
                    text(
                        "SELECT subject_type, subject_id, rule_code, outcome FROM aml_alerts "
                        "WHERE rule_version_id = :v AND subject_type <> 'customer' AND NOT shadow "
                        "AND (CAST(:u AS uuid) IS NULL OR user_id = CAST(:u AS uuid))"
                    ),
                    {"v": live.id, "u": user_id},
                )
            ).all()
            for r in rows:
                codes, _ = raised.setdefault((r.subject_type, r.subject_id), ([], r.outcome))
                codes.append(r.rule_code)
        for s in subjects:
            result = await evaluate_version(
                conn,
                candidate,
                user_id=s.user_id,
                subject_type=AmlSubjectType(s.kind),
                subject_id=s.id,
                at=s.at,
            )
            live_codes, live_outcome = raised.get((s.kind, s.id), ([], None))
            report.subjects.append(
                SubjectResult(
                    subject_type=s.kind,
                    subject_id=s.id,
                    user_id=s.user_id,
                    at=s.at,
                    would_raise=sorted(h.rule_code for h in result.hits),
                    outcome=result.outcome.value,
                    live_raised=sorted(live_codes),
                    live_outcome=live_outcome,
                )
            )
    return report

"""How long AML records are kept: five years after the business relationship ends (MLR 2017 reg. 40).

While the customer is a customer, `retention_until` is NULL on their alerts and cases (kept). When the
relationship ends (the account closes), `relationship_ended` dates every one of their AML records five
years on; a record raised afterwards (a late sweep) is dated the same way when it is written. Nothing is
deleted here: whatever purges records past their date reads this column.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, update
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import AmlAlert, AmlCase

RETENTION_YEARS = 5


def retention_date(ended_at: datetime) -> datetime:
    """Five calendar years after `ended_at` (29 February ends on 28 February)."""
    try:
        return ended_at.replace(year=ended_at.year + RETENTION_YEARS)
    except ValueError:
        return ended_at.replace(year=ended_at.year + RETENTION_YEARS, day=28)


async def relationship_ended(
    db: AsyncSession | AsyncConnection, user_id: uuid.UUID, at: datetime
) -> datetime:
    """Date the customer's AML alerts and cases for deletion five years after `at`; the date set.

    Idempotent; a later end (a relationship reopened and closed again) moves the date on, never back.
    The caller commits (the account's closing, in the same transaction: `services.gdpr_closure`)."""
    until = retention_date(at)
    for table in (AmlAlert, AmlCase):
        stmt = (
            update(table)
            .where(
                col(table.user_id) == user_id,
                (col(table.retention_until).is_(None)) | (col(table.retention_until) < until),
            )
            .values(retention_until=until)
        )
        if isinstance(db, AsyncSession):
            await db.exec(stmt)
        else:
            await db.execute(stmt)
    return until


async def retention_of(session: AsyncSession, user_id: uuid.UUID) -> datetime | None:
    """The date the customer's AML records may go (None: kept, the relationship has not ended or a
    record is not dated yet)."""
    conn = await session.connection()
    row = (
        await conn.execute(
            text(
                "SELECT count(*) AS n, count(retention_until) AS dated, max(retention_until) AS until FROM ("
                "SELECT retention_until FROM aml_cases WHERE user_id = :u "
                "UNION ALL SELECT retention_until FROM aml_alerts WHERE user_id = :u) r"
            ),
            {"u": user_id},
        )
    ).one()
    return row.until if row.n and row.n == row.dated else None


async def ended_relationship(conn: AsyncConnection, user_id: uuid.UUID) -> datetime | None:
    """For a record written after the account closed: the date the customer's records are due to go
    (their latest; five years from now if none is dated yet, which keeps it longer, never shorter).
    None while the customer is a customer."""
    return (
        await conn.execute(
            text(
                "SELECT coalesce((SELECT max(retention_until) FROM (SELECT retention_until FROM aml_cases "
                "WHERE user_id = :u UNION ALL SELECT retention_until FROM aml_alerts WHERE user_id = :u) r), "
                "now() + make_interval(years => :y)) FROM users WHERE id = :u AND status = 'CLOSED'"
            ),
            {"u": user_id, "y": RETENTION_YEARS},
        )
    ).scalar()

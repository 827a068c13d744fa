"""AML records are kept while the relationship lasts and dated five years after it ends (MLR 2017 reg. 40)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from cli.manage import main as cli_main
from services.aml.monitor import screen
from services.aml.retention import relationship_ended, retention_date, retention_of
from tests.aml.history import T0, History


def test_five_calendar_years_and_a_leap_day() -> None:
    assert retention_date(datetime(2026, 12, 2, 9, tzinfo=UTC)) == datetime(2031, 12, 2, 9, tzinfo=UTC)
    assert retention_date(datetime(2028, 2, 29, tzinfo=UTC)) == datetime(2033, 2, 28, tzinfo=UTC)


async def _dates(engine: AsyncEngine, h: History) -> set[datetime | None]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT retention_until FROM aml_alerts WHERE user_id = :u "
                "UNION ALL SELECT retention_until FROM aml_cases WHERE user_id = :u"
            ),
            {"u": h.user_id},
        )
        return {r[0] for r in rows}


async def test_records_are_dated_when_the_relationship_ends_and_later_ones_follow(
    engine: AsyncEngine,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    h = await History.new(engine)
    await screen(engine, "deposit", str(await h.deposit("6000", T0)))
    assert await _dates(engine, h) == {None}  # kept while a customer
    async with AsyncSession(engine) as session:
        assert await retention_of(session, h.user_id) is None

    closed_at = datetime(2026, 12, 2, 10, tzinfo=UTC)
    async with AsyncSession(engine) as session:
        until = await relationship_ended(session, h.user_id, closed_at)
        conn = await session.connection()
        await conn.execute(text("UPDATE users SET status = 'CLOSED' WHERE id = :u"), {"u": h.user_id})
        await session.commit()
    assert until == datetime(2031, 12, 2, 10, tzinfo=UTC)
    assert await _dates(engine, h) == {until}
    async with AsyncSession(engine) as session:
        assert await retention_of(session, h.user_id) == until
        # Idempotent, and an earlier date never shortens what is set.
        await relationship_ended(session, h.user_id, closed_at - timedelta(days=10))
        await session.commit()
    assert await _dates(engine, h) == {until}

    # An alert raised after the account closed is dated like the others.
    await screen(engine, "deposit", str(await h.deposit("7000", T0 + timedelta(days=2))))
    assert await _dates(engine, h) == {until}

    monkeypatch.setenv("DATABASE_URL", database_url)
    await asyncio.to_thread(cli_main, ["aml", "records", str(h.user_id)])
    shown = capsys.readouterr().out
    assert shown.count("retain until 2031-12-02") == 3 and "large_transaction" in shown

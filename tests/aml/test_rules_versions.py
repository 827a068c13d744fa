"""Rule set versions: published ones are immutable; a shadow version runs next to the live one and only
records alerts; a backtest of the live version reproduces its live alerts; the scheduled sweep raises
each customer alert once a day; the CLI prints a backtest."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from activities.aml import AmlActivities
from cli.manage import main as cli_main
from config import Settings
from models.aml import AmlOutcome, RuleVersionMode, SweepInput
from services.aml import versions
from services.aml.backtest import backtest
from services.aml.monitor import screen
from services.aml.rules import LargeTransactionParams, RuleKind, RuleSet, load_file, seed_files
from services.aml.sweep import customer_subject_id, sweep
from tests.aml.history import T0, History
from workflows.aml import AmlSweepWorkflow

SEED = load_file(seed_files()[0])


def _variant(mode: RuleVersionMode, large_gbp: str) -> RuleSet:
    """The seed with another label, mode and large-transaction threshold."""
    rules = [
        r.model_copy(update={"params": LargeTransactionParams(threshold_gbp=Decimal(large_gbp))})
        if r.kind == RuleKind.LARGE_TRANSACTION
        else r
        for r in SEED.rules
    ]
    return SEED.model_copy(update={"version": f"test-{uuid.uuid4().hex[:10]}", "mode": mode, "rules": rules})


async def _alerts(engine: AsyncEngine, user_id: uuid.UUID) -> list[tuple[str, str, str, bool, bool]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT a.subject_type, a.rule_code, v.version, a.shadow, a.case_id IS NOT NULL "
                    "FROM aml_alerts a JOIN aml_rule_versions v ON v.id = a.rule_version_id "
                    "WHERE a.user_id = :u ORDER BY a.subject_type, a.rule_code, a.shadow"
                ),
                {"u": user_id},
            )
        ).all()
    return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]


async def test_a_published_version_cannot_change(engine: AsyncEngine) -> None:
    draft = _variant(RuleVersionMode.SHADOW, "100")
    async with engine.begin() as conn:
        await versions.create_draft(conn, draft)
        await conn.execute(  # a draft may still change
            text('UPDATE aml_rule_versions SET rules = rules || \'{"description": "x"}\' WHERE version = :v'),
            {"v": draft.version},
        )
        await versions.publish(conn, draft.version)
        with pytest.raises(versions.RuleVersionImmutable):
            await versions.publish(conn, draft.version)
        await versions.retire(conn, draft.version)
    with pytest.raises(DBAPIError, match="cannot change"):
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE aml_rule_versions SET rules = '{}' WHERE version = :v"), {"v": draft.version}
            )


async def test_a_shadow_version_records_alerts_next_to_the_live_one_and_nothing_else(
    engine: AsyncEngine,
) -> None:
    shadow = _variant(RuleVersionMode.SHADOW, "100")  # flags any deposit of £100 or more
    async with engine.begin() as conn:
        await versions.create_draft(conn, shadow)
        await versions.publish(conn, shadow.version)
    try:
        h = await History.new(engine)
        did = await h.deposit("150", T0)
        answer = await screen(engine, "deposit", str(did))
    finally:
        async with engine.begin() as conn:
            await versions.retire(conn, shadow.version)
    # The live version saw nothing; the shadow's hit neither decides nor opens a case.
    assert answer.outcome == AmlOutcome.APPROVE and answer.case_id is None
    assert await _alerts(engine, h.user_id) == [("deposit", "large_transaction", shadow.version, True, False)]


async def test_a_backtest_of_the_live_version_reproduces_its_live_alerts(engine: AsyncEngine) -> None:
    h = await History.new(engine)
    d1 = await h.deposit("6000", T0)
    w1 = await h.withdrawal("5000", T0 + timedelta(minutes=30))
    d2 = await h.deposit("200", T0 + timedelta(hours=3), payer="87654321")
    trades = [await h.trade("BUY", "0.2", "50000", T0 + timedelta(hours=4))]
    for kind, sid in [("deposit", d1), ("withdrawal", w1), ("deposit", d2), ("trade", trades[0])]:
        await screen(engine, kind, str(sid))
    live = await _alerts(engine, h.user_id)
    assert {(a[0], a[1]) for a in live} >= {
        ("withdrawal", "deposit_then_withdrawal"),
        ("trade", "large_transaction"),
    }

    report = await backtest(engine, SEED.version, T0 - timedelta(days=1), user_id=h.user_id)
    assert len(report.subjects) == 4
    assert report.differing == []
    assert sum(len(s.live_raised) for s in report.subjects) == len(live)

    # A candidate with a lower large-transaction threshold would raise more, shown next to the live ones.
    candidate = _variant(RuleVersionMode.SHADOW, "150")
    async with engine.begin() as conn:
        await versions.create_draft(conn, candidate)
    report = await backtest(engine, candidate.version, T0 - timedelta(days=1), user_id=h.user_id)
    [extra] = report.differing
    assert (extra.subject_type, extra.subject_id) == ("deposit", str(d2))
    assert extra.would_raise == ["large_transaction", "value_24h"] and extra.live_raised == ["value_24h"]


async def test_the_sweep_raises_each_customer_alert_once_a_day(engine: AsyncEngine) -> None:
    h = await History.new(engine)
    last = await h.round_trips(5, T0)
    for i in range(4):
        await h.deposit("50", T0 - timedelta(days=i), payer=f"2000000{i}")
    at = last + timedelta(minutes=1)
    first = await sweep(engine, at)
    again = await sweep(engine, at + timedelta(minutes=30))
    assert first.alerts >= 2 and again.customers >= 1
    alerts = [a for a in await _alerts(engine, h.user_id) if a[0] == "customer"]
    assert [(a[1], a[3], a[4]) for a in alerts] == [
        ("many_sources", False, True),
        ("rapid_trading", False, True),
    ]
    async with engine.connect() as conn:
        subjects = (
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT subject_id FROM aml_alerts "
                        "WHERE user_id = :u AND subject_type = 'customer'"
                    ),
                    {"u": h.user_id},
                )
            )
            .scalars()
            .all()
        )
    assert subjects == [customer_subject_id(h.user_id, at)]


async def test_the_scheduled_workflow_runs_the_sweep(
    engine: AsyncEngine, temporal_client: Client, settings: Settings, task_queue: str
) -> None:
    h = await History.new(engine)
    last = await h.round_trips(6, T0 + timedelta(days=3))
    at = last + timedelta(minutes=2)
    aml = AmlActivities(engine=engine, settings=settings)
    async with Worker(
        temporal_client, task_queue=task_queue, workflows=[AmlSweepWorkflow], activities=[aml.sweep]
    ):
        done = await temporal_client.execute_workflow(
            AmlSweepWorkflow.run, SweepInput(at=at), id=f"aml-sweep-{uuid.uuid4()}", task_queue=task_queue
        )
    assert done.customers >= 1 and done.alerts >= 1
    assert [a[1] for a in await _alerts(engine, h.user_id) if a[0] == "customer"] == ["rapid_trading"]


def test_the_cli_prints_a_backtest(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    cli_main(["aml", "backtest", SEED.version, "--since", "2026-11-01"])
    out = capsys.readouterr().out
    assert out.startswith(
        f"backtest of {SEED.version} since 2026-11-01T00:00:00+00:00 against live {SEED.version}"
    )
    cli_main(["aml", "versions"])
    assert f"{SEED.version}\tpublished\tlive" in capsys.readouterr().out

"""Each seed rule fires on a constructed history and not on its near miss (evaluated against the real
features query; nothing recorded)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from models.aml import AmlOutcome, AmlSubjectType
from services.aml.evaluation import Evaluation
from services.aml.monitor import evaluate_version, subject_moment
from services.aml.rules import load_file, seed_files
from services.aml.versions import ActiveVersion
from tests.aml.history import T0, History

SEED = ActiveVersion(id=__import__("uuid").uuid4(), rules=load_file(seed_files()[0]))


async def _eval(engine: AsyncEngine, h: History, subject: AmlSubjectType, subject_id: str) -> Evaluation:
    async with engine.connect() as conn:
        if subject == AmlSubjectType.CUSTOMER:
            at = T0 + timedelta(days=1)
        else:
            _, at = await subject_moment(conn, subject, subject_id)
        return await evaluate_version(
            conn, SEED, user_id=h.user_id, subject_type=subject, subject_id=subject_id, at=at
        )


def _codes(e: Evaluation) -> set[str]:
    return {h.rule_code for h in e.hits}


@pytest.mark.parametrize(("gap_minutes", "fires"), [(119, True), (121, False)])
async def test_deposit_then_withdrawal_within_two_hours(
    engine: AsyncEngine, gap_minutes: int, fires: bool
) -> None:
    h = await History.new(engine)
    await h.deposit("500", T0)
    wid = await h.withdrawal("400", T0 + timedelta(minutes=gap_minutes))
    e = await _eval(engine, h, AmlSubjectType.WITHDRAWAL, str(wid))
    assert ("deposit_then_withdrawal" in _codes(e)) is fires
    assert e.outcome == (AmlOutcome.REVIEW if fires else AmlOutcome.APPROVE)


@pytest.mark.parametrize(("trips", "fires"), [(5, True), (4, False)])
async def test_rapid_trading_round_trips_in_an_hour(engine: AsyncEngine, trips: int, fires: bool) -> None:
    h = await History.new(engine)
    last = await h.round_trips(trips, T0, every=timedelta(minutes=5))
    oid = await h.trade("BUY", "0.01", "50000", last + timedelta(minutes=1))
    e = await _eval(engine, h, AmlSubjectType.TRADE, str(oid))
    assert ("rapid_trading" in _codes(e)) is fires


async def test_round_trips_spread_beyond_the_window_do_not_count(engine: AsyncEngine) -> None:
    h = await History.new(engine)
    last = await h.round_trips(5, T0, every=timedelta(minutes=8))  # 10 trades over 72 minutes
    oid = await h.trade("BUY", "0.01", "50000", last + timedelta(minutes=1))
    assert "rapid_trading" not in _codes(await _eval(engine, h, AmlSubjectType.TRADE, str(oid)))


@pytest.mark.parametrize(("payers", "fires"), [(4, True), (3, False)])
async def test_deposits_from_many_sources_in_a_week(engine: AsyncEngine, payers: int, fires: bool) -> None:
    h = await History.new(engine)
    for i in range(payers):
        await h.deposit("100", T0 + timedelta(days=i), payer=f"1000000{i}")
    did = await h.deposit("100", T0 + timedelta(days=5), payer="10000000")  # a payer seen before
    e = await _eval(engine, h, AmlSubjectType.DEPOSIT, str(did))
    assert ("many_sources" in _codes(e)) is fires


@pytest.mark.parametrize(
    ("nationality", "residence", "payer_country", "fires"),
    [
        ("IR", "GB", None, True),
        ("GB", "KP", None, True),
        ("GB", "GB", "NG", True),
        ("GB", "GB", "FR", False),
        (None, "FR", None, False),
    ],
)
async def test_high_risk_countries(
    engine: AsyncEngine, nationality: str | None, residence: str, payer_country: str | None, fires: bool
) -> None:
    h = await History.new(engine)
    await h.kyc(nationality=nationality, residence=residence)
    did = await h.deposit("100", T0, payer_country=payer_country)
    e = await _eval(engine, h, AmlSubjectType.DEPOSIT, str(did))
    assert ("high_risk_country" in _codes(e)) is fires
    if fires:
        assert e.outcome == AmlOutcome.BLOCK_AND_REVIEW  # 90 alone


@pytest.mark.parametrize(("second", "fires"), [("4000.01", True), ("4000.00", False)])
async def test_more_than_ten_thousand_pounds_in_24_hours(
    engine: AsyncEngine, second: str, fires: bool
) -> None:
    h = await History.new(engine)
    await h.deposit("3000", T0)
    await h.trade("BUY", "0.06", "50000", T0 + timedelta(hours=1))  # £3,000
    await h.deposit("9000", T0 - timedelta(hours=25))  # outside the window
    wid = await h.withdrawal(second, T0 + timedelta(hours=23))
    e = await _eval(engine, h, AmlSubjectType.WITHDRAWAL, str(wid))
    assert ("value_24h" in _codes(e)) is fires


@pytest.mark.parametrize(("amount", "fires"), [("5000", True), ("4999.99", False)])
async def test_a_large_single_transaction(engine: AsyncEngine, amount: str, fires: bool) -> None:
    h = await History.new(engine)
    did = await h.deposit(amount, T0)
    e = await _eval(engine, h, AmlSubjectType.DEPOSIT, str(did))
    assert ("large_transaction" in _codes(e)) is fires


async def test_uncredited_deposits_and_refused_withdrawals_count_for_nothing(engine: AsyncEngine) -> None:
    h = await History.new(engine)
    await h.deposit("9000", T0, status="SUSPENSE")
    await h.withdrawal("9000", T0 + timedelta(minutes=1), status="FAILED")
    wid = await h.withdrawal("1500", T0 + timedelta(minutes=30))
    e = await _eval(engine, h, AmlSubjectType.WITHDRAWAL, str(wid))
    assert e.hits == [] and e.outcome == AmlOutcome.APPROVE

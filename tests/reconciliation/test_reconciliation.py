"""Reconciliation against real venues, bank and books: a clean world matches; each fault is diagnosed,
and a drift, a posting with no venue movement or a venue trade we never booked halts that currency."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text

from models.market import OrderType, PlaceOrderRequest, Side
from models.reconciliation import RunStatus
from services.ledger import House, HouseAccount, Leg, Posting
from services.reconciliation import CAPITAL, customer_message
from tests.reconciliation.conftest import World


async def _halts(world: World) -> dict[str, str]:
    async with world.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT currency, reason FROM currency_halts"))).all()
    return {r[0]: r[1] for r in rows}


async def test_clean_world_reconciles_matched_for_every_currency(world: World) -> None:
    result = await world.reconcile()
    assert {c.currency: c.status for c in result.currencies} == {
        "GBP": RunStatus.MATCHED, "BTC": RunStatus.MATCHED, "ETH": RunStatus.MATCHED, "BNB": RunStatus.MATCHED
    }  # fmt: skip
    btc = next(c for c in result.currencies if c.currency == "BTC")
    assert btc.provider_balance is not None and btc.provider_balance > 0
    assert btc.provider_balance == btc.ledger_balance
    async with world.engine.connect() as conn:
        n = (await conn.execute(text("SELECT count(*) FROM reconciliation_runs WHERE run_id = :r"),
                                {"r": result.run_id})).scalar_one()  # fmt: skip
    assert n == 4
    assert await _halts(world) == {}


async def test_venue_balance_changed_behind_our_back_halts_that_currency_only(world: World) -> None:
    balances = await world.control("binance", "GET", "/_control/balances")
    btc = Decimal(str(balances["BTC"]["free"] if isinstance(balances["BTC"], dict) else balances["BTC"]))
    await world.control("binance", "POST", "/_control/balances", json={"BTC": str(btc - Decimal("0.5"))})
    result = await world.reconcile()
    statuses = {c.currency: c.status for c in result.currencies}
    assert statuses["BTC"] is RunStatus.DISCREPANCY
    assert statuses["ETH"] is RunStatus.MATCHED and statuses["GBP"] is RunStatus.MATCHED
    drift = next(c for c in result.currencies if c.currency == "BTC").discrepancy
    assert drift == Decimal("-0.5")
    assert await _halts(world) == {"BTC": customer_message("BTC")}
    assert "0.5" not in customer_message("BTC")


async def test_a_posting_with_no_venue_movement_is_a_discrepancy(world: World) -> None:
    await world.ledger.post(
        Posting(
            reference_type="test", reference_id=uuid.uuid4(), step="phantom", kind="test",
            legs=[Leg(House(HouseAccount.provider("kraken")), "ETH", Decimal("-2")),
                  Leg(House(CAPITAL), "ETH", Decimal("2"))],
        )
    )  # fmt: skip
    result = await world.reconcile()
    eth = next(c for c in result.currencies if c.currency == "ETH")
    assert eth.status is RunStatus.DISCREPANCY and eth.discrepancy == Decimal("-2")
    assert "ETH" in await _halts(world)


async def test_a_venue_trade_the_ledger_never_booked_is_unmatched_and_halts(world: World) -> None:
    adapter = world.adapters["binance"]
    order = await adapter.place_order(
        PlaceOrderRequest(
            symbol="BTC-GBP", side=Side.BUY, type=OrderType.MARKET, amount=Decimal("0.01"),
            client_order_id=f"stranger{uuid.uuid4().hex[:8]}",
        )
    )  # fmt: skip
    result = await world.reconcile()
    btc = next(c for c in result.currencies if c.currency == "BTC")
    assert btc.status is RunStatus.DISCREPANCY
    assert any("unmatched fill" in r for r in btc.reasons)
    async with world.engine.connect() as conn:
        details = (await conn.execute(
            text("SELECT details FROM reconciliation_runs WHERE run_id = :r AND currency = 'BTC'"),
            {"r": result.run_id},
        )).scalar_one()  # fmt: skip
    assert [u["venue_order_id"] for u in details["unmatched_fills"]] == [order.provider_order_id]
    assert {"BTC", "GBP"} <= set(await _halts(world))


async def test_an_unreachable_venue_is_error_not_matched_and_does_not_halt(world: World) -> None:
    await world.control("kraken", "POST", "/_control/faults", json={"kind": "maintenance"})
    result = await world.reconcile()
    assert {c.status for c in result.currencies} == {RunStatus.ERROR}
    assert await _halts(world) == {}
    assert all(c.provider_balance is None for c in result.currencies)


async def _staff(world: World) -> uuid.UUID:
    staff_id = uuid.uuid4()
    async with world.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, password_hash, roles) VALUES (:id, :e, 'x', ARRAY['ops'])"),
            {"id": staff_id, "e": f"ops-{staff_id.hex[:10]}@example.com"},
        )
    return staff_id


async def test_resume_needs_clean_runs_and_two_different_staff(world: World) -> None:
    from activities.reconciliation import policy_from
    from services.reconciliation import ResumeRefused, acknowledge

    balances = await world.control("binance", "GET", "/_control/balances")
    raw = balances["BTC"]["free"] if isinstance(balances["BTC"], dict) else balances["BTC"]
    await world.control("binance", "POST", "/_control/balances", json={"BTC": str(Decimal(str(raw)) - 1)})
    await world.reconcile()
    assert "BTC" in await _halts(world)
    policy = policy_from(world.settings)
    alice, bob = await _staff(world), await _staff(world)
    from services import payments

    assert not await payments.lift_halt(world.engine, "BTC", alice, "staff")  # one person cannot lift it
    assert "BTC" in await _halts(world)
    try:
        await acknowledge(world.engine, currency="BTC", staff_id=alice, reason="checked", override=False,
                          policy=policy)  # fmt: skip
        raise AssertionError("resumed without clean runs")
    except ResumeRefused:
        pass
    await world.control("binance", "POST", "/_control/balances", json={"BTC": str(raw)})  # found and fixed
    for _ in range(policy.clean_runs_to_resume):
        assert (await world.reconcile()).status("BTC") is RunStatus.MATCHED
    assert not await acknowledge(
        world.engine, currency="BTC", staff_id=alice, reason="venue restored", override=False, policy=policy
    )
    try:
        await acknowledge(world.engine, currency="BTC", staff_id=alice, reason="again", override=False,
                          policy=policy)  # fmt: skip
        raise AssertionError("one person acknowledged twice")
    except ResumeRefused:
        pass
    assert "BTC" in await _halts(world)
    assert await acknowledge(
        world.engine, currency="BTC", staff_id=bob, reason="second check", override=False, policy=policy
    )
    assert await _halts(world) == {}


async def test_history_replays_and_schedule_is_created_then_updated(world: World) -> None:
    from temporalio.client import ScheduleOverlapPolicy
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from temporal.schedules import ensure_reconciliation_schedule
    from workflows.reconciliation import ReconciliationWorkflow, reconciliation_workflow_id

    result = await world.reconcile()
    history = await world.client.get_workflow_handle(
        reconciliation_workflow_id(result.run_id)
    ).fetch_history()
    await Replayer(
        workflows=[ReconciliationWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)
    s = world.settings.model_copy(update={"reconciliation_interval_minutes": 15})
    created = await ensure_reconciliation_schedule(world.client, s)
    handle = world.client.get_schedule_handle("ops-reconciliation")
    try:
        again = await ensure_reconciliation_schedule(
            world.client, s.model_copy(update={"reconciliation_interval_minutes": 5})
        )
        assert created is True and again is False
        desc = await handle.describe()
        assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert desc.schedule.spec.intervals[0].every.total_seconds() == 300
    finally:
        await handle.delete()


async def test_an_order_in_flight_is_explained_not_flagged(world: World) -> None:
    """Filled at the venue, not yet settled by its saga: listed by id, subtracted, no halt."""
    user = await world.customer()
    order_id = uuid.uuid4()
    cid = f"o{order_id.hex[:16]}"
    placed = await world.adapters["kraken"].place_order(
        PlaceOrderRequest(
            symbol="ETH-GBP", side=Side.BUY, type=OrderType.MARKET, amount=Decimal("0.5"), client_order_id=cid
        )
    )
    async with world.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (id, user_id, symbol, side, type, amount, status, routed_to_provider, "
                "provider_order_id) VALUES (:id, :u, 'ETH-GBP', 'BUY', 'MARKET', 0.5, 'ROUTED', 'kraken', "
                ":po)"
            ),
            {"id": order_id, "u": user, "po": placed.provider_order_id},
        )
    result = await world.reconcile()
    eth = next(c for c in result.currencies if c.currency == "ETH")
    gbp = next(c for c in result.currencies if c.currency == "GBP")
    assert eth.status is RunStatus.MATCHED and gbp.status is RunStatus.MATCHED, result.currencies
    assert eth.in_flight == Decimal("0.5") and gbp.in_flight < 0
    async with world.engine.connect() as conn:
        details = (
            await conn.execute(
                text("SELECT details FROM reconciliation_runs WHERE run_id = :r AND currency = 'ETH'"),
                {"r": result.run_id},
            )
        ).scalar_one()
    assert [i["id"] for i in details["in_flight_items"] if i["kind"] == "order"] == [str(order_id)]
    assert details["unmatched_fills"] == []
    assert await _halts(world) == {}


async def test_a_source_in_error_for_several_runs_alerts_without_halting(world: World) -> None:
    await world.control("binance", "POST", "/_control/faults", json={"kind": "maintenance"})
    for _ in range(world.settings.reconciliation_error_runs_to_alert):
        assert (await world.reconcile()).status("BTC") is RunStatus.ERROR
    async with world.engine.connect() as conn:
        alerts = (
            await conn.execute(
                text(
                    "SELECT target_id FROM audit_log WHERE action = 'reconciliation.source_error' ORDER BY 1"
                )
            )
        ).all()
    assert {r[0] for r in alerts} == {"GBP", "BTC", "ETH", "BNB"}
    assert await _halts(world) == {}


async def test_a_history_recorded_before_the_reads_shared_one_helper_still_replays() -> None:
    """A run recorded with the workflow as it was before its reads were started through one helper: the
    same commands in the same order, so the current workflow replays it."""
    from pathlib import Path

    from temporalio.client import WorkflowHistory
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Replayer

    from workflows.reconciliation import ReconciliationWorkflow

    history = WorkflowHistory.from_json(
        "reconciliation-before-split",
        (Path(__file__).parent / "histories" / "reconciliation_before_split.json").read_text(),
    )
    await Replayer(
        workflows=[ReconciliationWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history)

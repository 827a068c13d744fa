"""FCA PS23/6 gates before a first trade: each refuses a first order and names itself, through the API
and in the order saga's own accept step; bad input is a 4xx naming the field with nothing written; a
failed assessment locks the next attempt for 24 hours."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from config import Settings
from models.first_trade_gates import Categorisation, ClientCategory
from models.order_flow import OrderRequest, OrderStatus, OrderType, Side
from services import first_trade_gates as gates
from tests.api_trading.conftest import Customer, Trading
from workflows.orders import OrderWorkflow, workflow_id

RIGHT = {
    "protection": "b", "total_loss": "c", "volatility": "a", "selling": "b", "diversification": "b",
    "regulation": "b", "scams": "a", "complexity": "b",
}  # fmt: skip
HNW = {"category": "high_net_worth", "declaration": {"accepted": True, "annual_income_gbp": "120000"}}


async def _order(t: Trading, c: Customer) -> Any:
    body = {"symbol": "BTC-GBP", "side": "buy", "type": "market", "quote_amount": "100.00"}
    return await t.http.post("/api/v1/orders", json=body, headers=c.headers())


async def _gates(t: Trading, c: Customer) -> dict[str, dict[str, Any]]:
    r = await t.http.get("/api/v1/onboarding", headers=c.headers())
    assert r.status_code == 200, r.text
    return {g["gate"]: g for g in r.json()}


async def _questionnaire_version(t: Trading, c: Customer) -> str:
    r = await t.http.get("/api/v1/onboarding/assessment", headers=c.headers())
    assert r.status_code == 200, r.text
    body = r.json()
    assert all("correct" not in q and "fundamental" not in q for q in body["questions"])  # answers stay ours
    return str(body["version"])


async def _attempts(t: Trading, user_id: uuid.UUID) -> int:
    async with t.engine.connect() as conn:
        n = await conn.execute(
            text("SELECT count(*) FROM appropriateness_attempts WHERE user_id = :u"), {"u": user_id}
        )
        return int(n.scalar_one())


async def test_each_gate_refuses_a_first_trade_through_the_api_until_all_are_passed(gated: Trading) -> None:
    c = await gated.customer(gbp="1000")
    async with gated.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET first_name = 'Dana' WHERE id = :u"), {"u": c.id})

    r = await _order(gated, c)
    assert r.status_code == 403 and r.json()["code"] == "gate_risk_warning", r.text
    warning = (await gated.http.get("/api/v1/onboarding/risk-warning", headers=c.headers())).json()
    assert warning["text"].startswith("Dana, this is a high-risk investment")
    assert warning["acknowledged_at"] is None
    r = await gated.http.post("/api/v1/onboarding/risk-warning", json={"version": "old"}, headers=c.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.version", r.text
    r = await gated.http.post(
        "/api/v1/onboarding/risk-warning", json={"version": warning["version"]}, headers=c.headers()
    )
    assert r.status_code == 200, r.text

    # The cooling-off saga (one second here) opens its gate; wait on that state, not on time.
    for _ in range(300):
        if (await _gates(gated, c))["cooling_off"]["state"] == "done":
            break
        await asyncio.sleep(0.05)
    assert (await _gates(gated, c))["cooling_off"]["state"] == "done"

    r = await _order(gated, c)
    assert r.status_code == 403 and r.json()["code"] == "gate_categorisation", r.text
    bad = {"category": "high_net_worth", "declaration": {"accepted": True, "annual_income_gbp": "40000"}}
    r = await gated.http.post("/api/v1/onboarding/categorisation", json=bad, headers=c.headers())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.declaration.annual_income_gbp"
    assert (await _gates(gated, c))["categorisation"]["state"] == "needed"  # nothing written
    r = await gated.http.post("/api/v1/onboarding/categorisation", json=HNW, headers=c.headers())
    assert r.status_code == 200 and r.json()["category"] == "high_net_worth", r.text

    r = await _order(gated, c)
    assert r.status_code == 403 and r.json()["code"] == "gate_appropriateness", r.text
    version = await _questionnaire_version(gated, c)
    r = await gated.http.post(
        "/api/v1/onboarding/assessment",
        json={"version": version, "answers": {k: v for k, v in RIGHT.items() if k != "scams"}},
        headers=c.headers(),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.answers.scams", r.text
    assert await _attempts(gated, c.id) == 0
    r = await gated.http.post(
        "/api/v1/onboarding/assessment", json={"version": version, "answers": RIGHT}, headers=c.headers()
    )
    assert r.status_code == 200 and r.json()["passed"] is True, r.text
    assert {g["state"] for g in (await _gates(gated, c)).values()} == {"done"}

    r = await _order(gated, c)
    assert r.status_code == 202, r.text
    order = await gated.wait_order(c, r.json()["id"])
    assert order["status"] == "FILLED", order


async def _saga_reason(t: Trading, user_id: uuid.UUID) -> tuple[OrderStatus, str]:
    """Run an order saga directly (no API in front of it) and return how it ended."""
    req = OrderRequest(
        order_id=uuid.uuid4(), user_id=user_id, symbol="BTC-GBP", side=Side.BUY, type=OrderType.MARKET,
        quote_amount=Decimal("100.00"), created_by=user_id,
    )  # fmt: skip
    state = await t.temporal.execute_workflow(
        OrderWorkflow.run, req, id=workflow_id(req.order_id), task_queue=t.task_queue
    )
    return state.status, state.reason or ""


async def test_the_order_sagas_accept_step_refuses_each_closed_gate_by_name(gated: Trading) -> None:
    c = await gated.customer(gbp="1000")
    status, reason = await _saga_reason(gated, c.id)
    assert status is OrderStatus.REJECTED and "risk_warning" in reason

    # Acknowledged, with a cooling-off whose saga is not started: the gate stays closed.
    await gates.acknowledge_risk_warning(
        gated.engine, c.id, gates.RISK_WARNING_VERSION, cooling_off_seconds=24 * 3600
    )
    status, reason = await _saga_reason(gated, c.id)
    assert status is OrderStatus.REJECTED and "cooling_off" in reason and "until" in reason

    assert await gates.complete_cooling_off(gated.engine, c.id)  # what the saga's timer does
    status, reason = await _saga_reason(gated, c.id)
    assert status is OrderStatus.REJECTED and "categorisation" in reason

    await gates.categorise(gated.engine, c.id, Categorisation.model_validate(HNW))
    status, reason = await _saga_reason(gated, c.id)
    assert status is OrderStatus.REJECTED and "appropriateness" in reason

    async with gated.engine.connect() as conn:
        shown = await gates.status(conn, c.id)
    assert [(g["gate"], g["state"]) for g in shown] == [
        ("risk_warning", "done"), ("cooling_off", "done"), ("categorisation", "done"),
        ("appropriateness", "needed"),
    ]  # fmt: skip
    async with gated.engine.connect() as conn:
        rejected = (
            await conn.execute(
                text("SELECT count(*) FROM orders WHERE user_id = :u AND status = 'REJECTED'"), {"u": c.id}
            )
        ).scalar_one()
    assert rejected == 4


async def test_a_failed_assessment_locks_the_next_attempt_for_24_hours(
    gated: Trading, settings: Settings
) -> None:
    c = await gated.customer()
    version = await _questionnaire_version(gated, c)
    r = await gated.http.post(
        "/api/v1/onboarding/assessment", json={"version": version, "answers": RIGHT}, headers=c.headers()
    )
    assert r.status_code == 403 and r.json()["code"] == "gate_categorisation", r.text  # categorised first
    await gates.categorise(gated.engine, c.id, Categorisation.model_validate(HNW))

    # Every other question right, but a fundamental one wrong: above the pass mark and still a fail.
    wrong = {**RIGHT, "total_loss": "a"}
    r = await gated.http.post(
        "/api/v1/onboarding/assessment", json={"version": version, "answers": wrong}, headers=c.headers()
    )
    assert r.status_code == 200, r.text
    failed = r.json()
    assert failed["passed"] is False and set(failed) == {"passed", "retry_after"}  # no answers given away
    retry_after = datetime.fromisoformat(failed["retry_after"])
    assert timedelta(hours=23, minutes=59) < retry_after - datetime.now(UTC) <= timedelta(hours=24)

    r = await gated.http.post(
        "/api/v1/onboarding/assessment", json={"version": version, "answers": RIGHT}, headers=c.headers()
    )
    assert r.status_code == 429 and r.json()["code"] == "gate_appropriateness_locked", r.text
    assert 0 < int(r.headers["Retry-After"]) <= 24 * 3600
    assert (await _gates(gated, c))["appropriateness"]["state"] == "waiting"
    assert await _attempts(gated, c.id) == 1

    spec = gates.load_questionnaire(settings.appropriateness_questions_file)
    with pytest.raises(gates.AppropriatenessLocked):
        await gates.submit_assessment(
            gated.engine, c.id, spec, version, RIGHT, now=retry_after - timedelta(minutes=1)
        )
    result = await gates.submit_assessment(gated.engine, c.id, spec, version, RIGHT, now=retry_after)
    assert result.passed
    assert await _attempts(gated, c.id) == 2


async def test_a_categorisation_needs_a_declaration_its_category_accepts(gated: Trading) -> None:
    c = await gated.customer()
    share, limit = "high_risk_share_last_12_months_percent", "will_limit_to_10_percent_next_12_months"
    cases = [
        ({"category": "restricted", "declaration": {"accepted": True, share: "20", limit: True}}, share),
        ({"category": "restricted", "declaration": {"accepted": True, share: "5"}}, limit),
        ({"category": "sophisticated", "declaration": {"accepted": True}}, "business_angel_network_member"),
        ({"category": "high_net_worth", "declaration": {"annual_income_gbp": "500000"}}, "accepted"),
        ({"category": "high_net_worth", "declaration": {"accepted": True, "net_assets_gbp": 250000}},
         "net_assets_gbp"),
    ]  # fmt: skip
    for body, field in cases:
        r = await gated.http.post("/api/v1/onboarding/categorisation", json=body, headers=c.headers())
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["field"] == f"body.declaration.{field}", (body, r.text)
    assert (await _gates(gated, c))["categorisation"]["state"] == "needed"
    ok = {"category": "restricted", "declaration": {"accepted": True, share: "5", limit: True}}
    r = await gated.http.post("/api/v1/onboarding/categorisation", json=ok, headers=c.headers())
    assert r.status_code == 200 and r.json()["category"] == ClientCategory.RESTRICTED.value, r.text


def test_the_gates_cannot_be_turned_off_outside_tests() -> None:
    with pytest.raises(ValueError, match="only for tests"):
        Settings(environment="development", first_trade_gates_enforced=False)
    assert Settings(environment="development").first_trade_gates_enforced is True
    assert Settings(environment="test").first_trade_gates_enforced is False
    with pytest.raises(ValueError, match="24 hours"):
        Settings(environment="production", first_trade_cooling_off_seconds=60)

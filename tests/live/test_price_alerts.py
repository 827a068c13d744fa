"""Price alerts end to end: the API (own data only, problem details, limits, amounts as strings) and the
schedule's check against the sandboxes' live prices, which writes each firing to notify-core's outbox once."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from models.price_alerts import PriceAlertCheckInput, PriceAlertCheckResult
from services.notifications.templates import render
from tests.live.conftest import MAX_ALERTS, Customer, LiveStack
from workflows.price_alerts import PriceAlertsWorkflow

PROBLEM = "application/problem+json"


async def _check(live: LiveStack, *, cooldown_s: float = 3600) -> PriceAlertCheckResult:
    """One run of what the `ops-price-alerts` schedule starts, on this package's worker."""
    return await live.temporal.execute_workflow(
        PriceAlertsWorkflow.run,
        PriceAlertCheckInput(band=Decimal("0.01"), cooldown_seconds=cooldown_s),
        id=f"price-alerts-test-{uuid.uuid4()}",
        task_queue=live.task_queue,
    )


async def _outbox(live: LiveStack, alert_id: str) -> list[dict[str, Any]]:
    async with live.engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT event, user_id, payload, dedupe_key FROM notification_outbox "
                "WHERE dedupe_key LIKE :k ORDER BY dedupe_key"
            ),
            {"k": f"price-alert:{alert_id}:%"},
        )
        return [dict(r._mapping) for r in rows]


async def _listed(live: LiveStack, who: Customer) -> dict[str, dict[str, Any]]:
    r = await live.http.get("/api/v1/price-alerts", headers=who.headers())
    assert r.status_code == 200, r.text
    return {a["id"]: a for a in r.json()["items"]}


async def _alert(live: LiveStack, who: Customer, **body: Any) -> dict[str, Any]:
    r = await live.http.post("/api/v1/price-alerts", json=body, headers=who.headers())
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()
    return data


async def test_customers_set_list_and_delete_their_own_alerts(live: LiveStack) -> None:
    hal = await live.customer()
    ida = await live.customer()
    made = await _alert(live, hal, symbol="BTC-GBP", direction="ABOVE", price="70000.5", recurring=True)
    assert made["price"] == "70000.50" and made["direction"] == "ABOVE" and made["recurring"] is True
    assert made["armed"] is True and made["active"] is True and made["fired_count"] == 0
    await _alert(live, hal, symbol="ETH-GBP", direction="BELOW", price="1500")

    listed = (await live.http.get("/api/v1/price-alerts", headers=hal.headers())).json()
    assert [a["id"] for a in listed["items"]][0] == made["id"] and len(listed["items"]) == 2
    assert listed["limit"] == MAX_ALERTS
    assert (await live.http.get("/api/v1/price-alerts", headers=ida.headers())).json()["items"] == []

    r = await live.http.delete(f"/api/v1/price-alerts/{made['id']}", headers=ida.headers())  # not hers
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "price_alert_not_found"
    r = await live.http.delete(f"/api/v1/price-alerts/{made['id']}", headers=hal.headers())
    assert r.status_code == 204
    listed = (await live.http.get("/api/v1/price-alerts", headers=hal.headers())).json()
    assert [a["symbol"] for a in listed["items"]] == ["ETH-GBP"]
    assert (await live.http.get("/api/v1/price-alerts")).status_code == 401


async def test_bad_alerts_are_refused_with_problem_details_and_nothing_written(live: LiveStack) -> None:
    jon = await live.customer()
    bad: list[tuple[dict[str, Any], str, str]] = [
        ({"symbol": "DOGE-GBP", "direction": "ABOVE", "price": "1"}, "invalid_price_alert", "symbol"),
        ({"symbol": "BTC-GBP", "direction": "ABOVE", "price": "0"}, "invalid_price_alert", "price"),
        ({"symbol": "BTC-GBP", "direction": "ABOVE", "price": "1.123456789"}, "invalid_price_alert", "price"),
        ({"symbol": "BTC-GBP", "direction": "ABOVE", "price": 70000}, "validation_error", "body.price"),
        ({"symbol": "BTC-GBP", "direction": "ABOVE", "price": "-5"}, "validation_error", "body.price"),
        ({"symbol": "BTC-GBP", "direction": "SIDEWAYS", "price": "5"}, "validation_error", "body.direction"),
    ]
    for body, code, field in bad:
        r = await live.http.post("/api/v1/price-alerts", json=body, headers=jon.headers())
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, (body, r.text)
        assert r.json()["code"] == code and r.json()["errors"][0]["field"] == field, (body, r.json())
    assert (await live.http.get("/api/v1/price-alerts", headers=jon.headers())).json()["items"] == []

    for n in range(MAX_ALERTS):
        await _alert(live, jon, symbol="BTC-GBP", direction="BELOW", price=str(1000 + n))
    one_more = {"symbol": "BTC-GBP", "direction": "BELOW", "price": "1"}
    r = await live.http.post("/api/v1/price-alerts", json=one_more, headers=jon.headers())
    assert r.status_code == 409 and r.json()["code"] == "price_alert_limit_reached"
    assert len(await _listed(live, jon)) == MAX_ALERTS


async def test_an_alert_fires_once_on_a_crossing_not_while_the_price_oscillates_and_again_after_cooldown(
    live: LiveStack,
) -> None:
    kim = await live.customer()
    await live.set_btc_bid("69000")
    alert = await _alert(live, kim, symbol="BTC-GBP", direction="ABOVE", price="70000", recurring=True)
    once = await _alert(live, kim, symbol="BTC-GBP", direction="ABOVE", price="70000", recurring=False)

    await _check(live)
    assert await _outbox(live, alert["id"]) == []

    await live.set_btc_bid("70100")  # the crossing
    result = await _check(live)
    assert result.fired >= 2
    (first,) = await _outbox(live, alert["id"])
    assert first["event"] == "price_alert" and first["user_id"] == kim.id
    assert first["dedupe_key"] == f"price-alert:{alert['id']}:1"
    assert first["payload"]["price"] == "70100.00" and first["payload"]["threshold"] == "70000.00"
    shown = render("price_alert", first["payload"])  # notify-core's template renders what we wrote
    assert shown.short == "BTC-GBP is above £70,000.00: now £70,100.00."

    # Oscillating inside the band (re-arm below 69,300): no further firing, however many checks.
    for bid in ("69900", "70200", "69350", "70400"):
        await live.set_btc_bid(bid)
        await _check(live)
    assert len(await _outbox(live, alert["id"])) == 1

    # Back past the band and across again, but inside the cooldown: armed, not fired.
    await live.set_btc_bid("69000")
    await _check(live)
    await live.set_btc_bid("70300")
    await _check(live)
    assert len(await _outbox(live, alert["id"])) == 1
    listed = await _listed(live, kim)
    assert listed[alert["id"]]["armed"] is True and listed[alert["id"]]["fired_count"] == 1

    # The cooldown over (the last firing moved an hour into the past): the next check fires it.
    async with live.engine.begin() as c:
        await c.execute(
            text("UPDATE price_alerts SET last_fired_at = last_fired_at - interval '1 hour' WHERE id = :id"),
            {"id": alert["id"]},
        )
    await _check(live)
    await _check(live)  # and a retried check does not fire it twice
    keys = [r["dedupe_key"] for r in await _outbox(live, alert["id"])]
    assert keys == [f"price-alert:{alert['id']}:1", f"price-alert:{alert['id']}:2"]

    # The one-shot alert fired once and is done.
    assert [r["dedupe_key"] for r in await _outbox(live, once["id"])] == [f"price-alert:{once['id']}:1"]
    listed = await _listed(live, kim)
    assert listed[once["id"]]["active"] is False and listed[once["id"]]["last_fired_price"] == "70100.00"
    assert listed[alert["id"]]["fired_count"] == 2 and listed[alert["id"]]["last_fired_price"] == "70300.00"


async def test_the_check_workflow_replays_from_its_history(live: LiveStack) -> None:
    """Workflow code stays deterministic: a recorded run replays without a non-determinism error."""
    workflow_id = f"price-alerts-replay-{uuid.uuid4()}"
    await live.temporal.execute_workflow(
        PriceAlertsWorkflow.run, PriceAlertCheckInput(), id=workflow_id, task_queue=live.task_queue
    )
    history = await live.temporal.get_workflow_handle(workflow_id).fetch_history()
    replayer = Replayer(workflows=[PriceAlertsWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)

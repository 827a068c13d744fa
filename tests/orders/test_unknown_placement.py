"""A placement whose outcome is unknown is never sent again and never sent elsewhere: the saga asks the
venue (order lookup and trade history) until it knows, showing NEEDS_ATTENTION with the hold kept past
a bound, and takes ops' word when they have it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyotp
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHandle

from config import Settings
from models.market import OrderType, Side
from models.order_flow import CancelRequest, OrderState, OrderStatus, PlacementResolution, ResolutionOutcome
from models.sealed import seal
from services.decision_tokens import DecisionTokens
from temporal import search_attributes as sa
from tests.orders.conftest import OrderStack
from workflows.orders import OrderWorkflow

D = Decimal


@pytest.fixture
def settings(database_url: str, temporal_address: str) -> Settings:
    """Quick re-checks, and NEEDS_ATTENTION after 2 s of not knowing (production: 15 min)."""
    return Settings(
        environment="test",
        database_url=database_url,
        temporal_address=temporal_address,
        order_unknown_recheck_first_s=0.2,
        order_unknown_recheck_max_s=0.5,
        order_unknown_attention_after_s=2,
    )


async def active_holds(stack: OrderStack, order_id: uuid.UUID) -> list[Decimal]:
    async with stack.engine.connect() as c:
        rows = await c.execute(
            text("SELECT amount - consumed FROM holds WHERE reference_id = :o AND status = 'active'"),
            {"o": order_id},
        )
        return [r[0] for r in rows]


async def wait_for_status(stack: OrderStack, order_id: uuid.UUID, status: OrderStatus) -> None:
    for _ in range(300):
        async with stack.engine.connect() as c:
            now = (await c.execute(text("SELECT status FROM orders WHERE id = :o"), {"o": order_id})).scalar()
        if now == status.value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} never reached {status}")


async def assert_flagged(stack: OrderStack, handle: WorkflowHandle[OrderWorkflow, OrderState]) -> None:
    state = await handle.query(OrderWorkflow.state)
    assert state.status is OrderStatus.NEEDS_ATTENTION
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(sa.ORDER_STATUS) == OrderStatus.NEEDS_ATTENTION.value


async def test_timeout_after_accept_with_lagging_lookups_and_other_venues_down_executes_once(
    stack: OrderStack,
) -> None:
    """The reproduction of the double execution: Binance accepts and fills, the answer never comes,
    its lookups say "unknown order" for a long time, and Kraken refuses (maintenance). One Binance
    order for the client order id, its fill booked once, nothing sent anywhere else."""
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="hang", hang_ms=3000)
    await stack.venues["binance"].fault("not_found_lag", lookups=30)
    await stack.venues["kraken"].fault("maintenance", paths=["AddOrder"])
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))

    state = await stack.run(req)

    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["binance"]
    binance = await stack.venue_orders("binance", req.order_id)
    assert len(binance) == 1
    assert len({o["client_order_id"] for o in binance}) == 1
    assert await stack.venue_orders("kraken", req.order_id) == []
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
    btc = await stack.ledger.entries([await stack.ledger.customer_account(user, "BTC")])
    assert len(btc.entries) == 1
    assert await active_holds(stack, req.order_id) == []
    _, available, reserved = await stack.balance(user, "GBP")
    row = await stack.order_row(req.order_id)
    assert reserved == 0
    assert available == D("5000") - row["filled_quote_amount"] - row["total_fee"]  # charged once


async def test_still_unknown_after_the_bound_needs_attention_keeps_the_hold_then_settles_on_the_truth(
    stack: OrderStack,
) -> None:
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="drop")
    await stack.venues["binance"].fault("not_found_lag", lookups=45)
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    handle = await stack.start(req)

    await wait_for_status(stack, req.order_id, OrderStatus.NEEDS_ATTENTION)
    await assert_flagged(stack, handle)
    assert len(await active_holds(stack, req.order_id)) == 1  # the money stays reserved
    row = await stack.order_row(req.order_id)
    assert "binance" not in (row["reject_reason"] or "")  # our words, not the venue's

    state = await handle.result()  # the venue shows the order in the end: settled, once

    assert state.status is OrderStatus.FILLED, state.reason
    assert len(await stack.venue_orders("binance", req.order_id)) == 1
    assert await stack.venue_orders("kraken", req.order_id) == []
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
    assert await active_holds(stack, req.order_id) == []
    row = await stack.order_row(req.order_id)
    assert row["status"] == "FILLED" and row["reject_reason"] is None and state.reason is None


async def ops_user(stack: OrderStack, *, roles: tuple[str, ...] = ("ops",)) -> tuple[uuid.UUID, str, str]:
    """A staff user with 2FA: (id, email, TOTP secret)."""
    uid = uuid.uuid4()
    secret = pyotp.random_base32()
    async with stack.engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, twofa_enabled, twofa_secret) "
                "VALUES (:i, :e, 'x', 0, :r, true, :s)"
            ),
            {"i": uid, "e": f"ops-{uid.hex[:12]}@orders.test", "r": list(roles), "s": seal(secret)},
        )
    return uid, f"ops-{uid.hex[:12]}@orders.test", secret


def ops_token(stack: OrderStack, staff: uuid.UUID, order_id: uuid.UUID, action: str, detail: str = "") -> str:
    return DecisionTokens.from_secret(stack.settings.jwt_secret).issue(
        actor_id=staff, order_id=order_id, action=action, now=datetime.now(UTC), detail=detail
    )


async def audit_rows(stack: OrderStack, order_id: uuid.UUID, action: str) -> list[dict[str, Any]]:
    async with stack.engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT actor_id, details FROM audit_log WHERE target_type = 'order' AND target_id = :o "
                "AND action = :a ORDER BY created_at"
            ),
            {"o": str(order_id), "a": action},
        )
        return [dict(r._mapping) for r in rows]


async def until(predicate: Any) -> Any:
    for _ in range(200):
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


async def resolve(
    handle: WorkflowHandle[OrderWorkflow, OrderState], resolution: PlacementResolution
) -> ResolutionOutcome:
    # By name: the SDK's typing of async update handlers yields a coroutine type here.
    return await handle.execute_update("resolve_placement_checked", resolution, result_type=ResolutionOutcome)


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_ops_resolution_that_the_venue_never_received_it_lets_another_venue_fill(
    stack: OrderStack, database_url: str
) -> None:
    """A 502 from the venue's edge while placing: the order may or may not exist, so the saga waits
    (never re-sends). Ops establish with the venue that it never arrived and say so with a token from
    `python -m cli approval-token` (after a TOTP check); only then Kraken gets it."""
    user = await stack.customer(gbp="5000")
    staff, email, secret = await ops_user(stack)
    await stack.venues["binance"].fault("http_error", status=502, count=1, paths=["/api/v3/order"])
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    handle = await stack.start(req)

    await wait_for_status(stack, req.order_id, OrderStatus.NEEDS_ATTENTION)
    await assert_flagged(stack, handle)
    assert await stack.venue_orders("kraken", req.order_id) == []
    note = "venue support: no such order"
    wrong = await asyncio.to_thread(
        _cli, database_url, "approval-token", email, str(req.order_id), "--action", "placement_absent",
        "--reason", note, "--totp", "000000",
    )  # fmt: skip
    assert wrong.returncode != 0 and "TOTP" in wrong.stderr
    made = await asyncio.to_thread(
        _cli, database_url, "approval-token", email, str(req.order_id), "--action", "placement_absent",
        "--reason", note, "--totp", pyotp.TOTP(secret).now(),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    await handle.signal(
        OrderWorkflow.resolve_placement,
        PlacementResolution(absent=True, note=note, staff_id=staff, token=made.stdout.strip()),
    )
    state = await handle.result()

    assert state.status is OrderStatus.FILLED, state.reason
    assert state.providers == ["kraken"]
    assert await stack.venue_orders("binance", req.order_id) == []
    assert len(await stack.venue_orders("kraken", req.order_id)) == 1
    assert (await stack.balance(user, "BTC"))[0] == D("0.01")
    counted = await audit_rows(stack, req.order_id, "order.placement_absent")
    assert [r["actor_id"] for r in counted] == [staff]


async def test_a_placement_resolution_without_proof_from_an_ops_user_is_refused_and_audited(
    stack: OrderStack,
) -> None:
    """Anyone who can reach Temporal can signal `resolve_placement`: a bare claim, a token for another
    order, a token bound to another note, or a valid token of a user without the ops role changes
    nothing (no fallback, hold kept); each is audited as refused."""
    user = await stack.customer(gbp="5000")
    staff, _, _ = await ops_user(stack)
    trader, _, _ = await ops_user(stack, roles=("approver",))
    await stack.venues["binance"].fault("http_error", status=502, count=1, paths=["/api/v3/order"])
    req = stack.request(user, side=Side.BUY, type=OrderType.MARKET, amount=D("0.01"))
    handle = await stack.start(req)
    await wait_for_status(stack, req.order_id, OrderStatus.NEEDS_ATTENTION)

    # `temporal workflow signal --name resolve_placement --input '{"absent": true, "resolved_by": ...}'`
    await handle.signal(
        OrderWorkflow.resolve_placement, PlacementResolution(absent=True, resolved_by=str(staff), note="n")
    )
    refused = await until(lambda: audit_rows(stack, req.order_id, "order.placement_absent.refused"))
    assert refused[0]["actor_id"] is None and refused[0]["details"]["refusal"] == "unproven"
    assert refused[0]["details"]["claimed_actor"] == str(staff)

    def absent(
        staff_id: uuid.UUID, signer: uuid.UUID, order_id: uuid.UUID, bound: str
    ) -> PlacementResolution:
        token = ops_token(stack, signer, order_id, "placement_absent", bound)
        return PlacementResolution(absent=True, note="n", staff_id=staff_id, token=token)

    attempts = [
        ("unproven", "another order", absent(staff, staff, uuid.uuid4(), "n")),
        ("unproven", "another note", absent(staff, staff, req.order_id, "something else")),
        ("unproven", "another user", absent(trader, staff, req.order_id, "n")),
        ("not_ops", "no ops role", absent(trader, trader, req.order_id, "n")),
    ]
    for code, what, resolution in attempts:
        outcome = await resolve(handle, resolution)
        assert not outcome.accepted and outcome.code == code, what

    state = await handle.query(OrderWorkflow.state)
    assert state.status is OrderStatus.NEEDS_ATTENTION
    assert await stack.venue_orders("kraken", req.order_id) == []
    assert len(await active_holds(stack, req.order_id)) == 1
    assert len(await audit_rows(stack, req.order_id, "order.placement_absent.refused")) == 5
    assert await audit_rows(stack, req.order_id, "order.placement_absent") == []

    outcome = await resolve(handle, absent(staff, staff, req.order_id, "n"))
    assert outcome.accepted, outcome
    state = await handle.result()
    assert state.status is OrderStatus.FILLED and state.providers == ["kraken"]
    again = await audit_rows(stack, req.order_id, "order.placement_absent")
    assert [r["actor_id"] for r in again] == [staff]


async def test_a_limit_order_whose_placement_is_unknown_keeps_its_hold_until_the_venue_shows_it(
    stack: OrderStack,
) -> None:
    """A GTC order may be live at the venue: its hold is never released on an unknown."""
    user = await stack.customer(gbp="5000")
    await stack.venues["binance"].fault("timeout_after_accept", count=1, mode="drop")
    await stack.venues["binance"].fault("not_found_lag", lookups=25)
    req = stack.request(user, side=Side.BUY, type=OrderType.LIMIT, amount=D("0.01"), price=D("60000"))
    handle = await stack.start(req)

    await wait_for_status(stack, req.order_id, OrderStatus.OPEN)
    assert len(await active_holds(stack, req.order_id)) == 1
    assert len(await stack.venue_orders("binance", req.order_id)) == 1
    await handle.signal(OrderWorkflow.cancel, CancelRequest(reason="changed my mind"))
    state = await handle.result()
    assert state.status is OrderStatus.CANCELLED
    assert await active_holds(stack, req.order_id) == []

"""Ops ask for a float transfer over HTTP (ops role + TOTP); over the limit, two other staff approve it
(each with TOTP) before anything is sent; bad input is a 4xx with nothing written."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal

import httpx
from sqlalchemy import text
from temporalio.worker import Worker

from activities.treasury import TreasuryActivities
from models.treasury import FloatTransferInput, FloatTransferResult, TransferStatus
from sandbox.control import STATE_KEY
from temporal import task_queues
from tests.reconciliation.conftest import World
from tests.reconciliation.test_admin_api import _h, _user, api
from workers.registry import treasury_activities
from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id

__all__ = ["api"]
BASE = "/api/v1/admin/float-transfers"


async def test_ops_ask_for_a_transfer_over_the_limit_and_two_other_staff_release_it(
    world: World, api: str
) -> None:
    for name in ("binance", "kraken"):
        world.apps[name][STATE_KEY].venue.config.confirmation_seconds = 0.05
    s = world.settings.model_copy(update={"float_transfer_poll_seconds": 0.2})
    acts = TreasuryActivities(
        engine=world.engine, settings=s, adapters=lambda: world.adapters, ledger=world.ledger
    )
    customer, _ = await _user(world, api, [])
    (maker, maker_totp), (bob, bob_totp), (carol, carol_totp) = [
        await _user(world, api, ["ops"]) for _ in range(3)
    ]
    over = str(world.settings.float_transfer_approval_limits["ETH"] + 1)
    body = {
        "currency": "ETH",
        "from_venue": "binance",
        "to_venue": "kraken",
        "amount": over,
        "reason": "rebalance",
    }
    async with (
        Worker(
            world.client, task_queue=task_queues.OPS, workflows=[FloatTransferWorkflow],
            activities=treasury_activities(acts),
        ),
        httpx.AsyncClient(base_url=api, timeout=30) as c,
    ):  # fmt: skip
        assert (await c.post(BASE, json=body, headers=_h(customer))).status_code == 403
        assert (await c.post(BASE, json=body, headers=_h(maker))).status_code in (401, 403)  # no TOTP
        bad = await c.post(BASE, json={**body, "amount": "1.000000001"}, headers=_h(maker, maker_totp))
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        async with world.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM float_transfers"))).scalar_one() == 0
        # A TOTP code counts once per user: the next step's code (accepted within the drift window).
        next_code = {**_h(maker), "X-TOTP-Code": maker_totp.at(time.time() + 30)}
        made = await c.post(BASE, json=body, headers=next_code)
        assert made.status_code == 202, made.text
        row = made.json()
        assert row["status"] == TransferStatus.AWAITING_APPROVAL.value and row["approvals_required"] == 2
        assert row["amount"] == f"{over}.00000000"
        transfer_id = row["transfer_id"]
        first = await c.post(f"{BASE}/{transfer_id}/approve", headers=_h(bob, bob_totp))
        assert first.status_code == 202, first.text
        await asyncio.sleep(0.5)
        assert not world.apps["binance"][STATE_KEY].venue.withdrawals  # one approval sends nothing
        second = await c.post(f"{BASE}/{transfer_id}/approve", headers=_h(carol, carol_totp))
        assert second.status_code == 202, second.text
        result = await world.client.get_workflow_handle(
            float_transfer_workflow_id(transfer_id), result_type=FloatTransferResult
        ).result()
        assert result.status is TransferStatus.SETTLED
        listed = await c.get(BASE, headers=_h(bob))
        assert listed.status_code == 200
        assert [(r["transfer_id"], r["status"]) for r in listed.json()] == [(transfer_id, "SETTLED")]


async def test_ops_resolve_a_transfer_in_needs_attention_over_http_with_totp(world: World, api: str) -> None:
    world.apps["binance"][STATE_KEY].venue.config.confirmation_seconds = 0.05
    kraken = world.apps["kraken"][STATE_KEY].venue
    kraken.config.confirmation_seconds = 10_000  # the credit does not come while the saga polls
    s = world.settings.model_copy(update={"float_transfer_poll_seconds": 0.1})
    acts = TreasuryActivities(
        engine=world.engine, settings=s, adapters=lambda: world.adapters, ledger=world.ledger
    )
    (maker, maker_totp), (alice, alice_totp) = [await _user(world, api, ["ops"]) for _ in range(2)]
    data = FloatTransferInput(
        transfer_id=uuid.uuid4(), currency="ETH", from_venue="binance", to_venue="kraken", amount=Decimal(2),
        reason="rebalance", credit_poll_seconds=0.1, credit_checks=2, attention_recheck_seconds=600,
    )  # fmt: skip
    async with (
        Worker(
            world.client, task_queue=task_queues.OPS, workflows=[FloatTransferWorkflow],
            activities=treasury_activities(acts),
        ),
        httpx.AsyncClient(base_url=api, timeout=30) as c,
    ):  # fmt: skip
        handle = await world.client.start_workflow(
            FloatTransferWorkflow.run, data, id=float_transfer_workflow_id(data.transfer_id),
            task_queue=task_queues.OPS,
        )  # fmt: skip
        for _ in range(200):
            if await handle.query(FloatTransferWorkflow.attention) == "credit":
                break
            await asyncio.sleep(0.1)
        url = f"{BASE}/{data.transfer_id}/resolve"
        word = {"outcome": "credited", "note": "Kraken support confirmed the credit"}
        assert (await c.post(url, json=word, headers=_h(alice))).status_code in (401, 403)  # no TOTP
        unknown = await c.post(f"{BASE}/{uuid.uuid4()}/resolve", json=word, headers=_h(alice, alice_totp))
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
        next_code = {**_h(alice), "X-TOTP-Code": alice_totp.at(time.time() + 30)}
        wrong = await c.post(url, json={**word, "outcome": "not_sent"}, headers=next_code)
        assert wrong.status_code == 409 and wrong.json()["code"] == "wrong_stage", wrong.text
        bad = await c.post(url, json={**word, "fee": 0.1}, headers=_h(maker, maker_totp))
        assert bad.status_code == 422  # a float is not money; nothing reached the saga
        dep = next(d for d in kraken.deposits.values() if d.asset == "ETH" and d.amount == Decimal(2))
        kraken.confirm_deposit(dep.id)
        third = {**_h(maker), "X-TOTP-Code": maker_totp.at(time.time() + 30)}
        ok = await c.post(url, json=word, headers=third)
        assert ok.status_code == 200, ok.text
        assert ok.json()["accepted"] is True and ok.json()["required"] == 1
        result = await world.client.get_workflow_handle(
            float_transfer_workflow_id(data.transfer_id), result_type=FloatTransferResult
        ).result()
        assert result.status is TransferStatus.SETTLED

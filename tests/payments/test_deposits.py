"""GBP deposits through the sandbox bank's signed webhook, end to end over HTTP and Temporal."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from temporalio.service import RPCError

from models.payments import BankPayment
from providers.bank import SIGNATURE_HEADER, TIMESTAMP_HEADER
from sandbox.bank import sign
from services.ledger import HouseAccount, Ledger
from temporal import task_queues
from tests.payments.conftest import Stack, balance, deposit_gbp, make_user, wait_for
from workflows.deposits import DepositWorkflow, deposit_workflow_id


def _event(tx_id: str, reference: str, amount: str) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{tx_id}",
            "type": "payment.received",
            "data": {"bank_tx_id": tx_id, "amount": amount, "currency": "GBP", "reference": reference,
                     "payer_name": "A Customer", "payer_sort_code": "112233",
                     "payer_account_number": "44556677"},
        }
    ).encode()  # fmt: skip


def _signed(stack: Stack, body: bytes, *, ts: int | None = None, secret: str | None = None) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    sig = sign(secret or stack.settings.bank_webhook_secret, stamp, body)
    return {"Content-Type": "application/json", TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"v1={sig}"}


async def _reference(stack: Stack, customer_headers: dict[str, str]) -> str:
    async with stack.http() as c:
        r = await c.get("/api/v1/deposits/instructions", params={"currency": "GBP"}, headers=customer_headers)
        assert r.status_code == 200, r.text
        return str(r.json()["reference"])


async def _deposit_rows(stack: Stack, tx_id: str) -> list[tuple[str, Decimal]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT status, amount FROM deposits WHERE provider = 'bank' AND provider_tx_id = :t"),
            {"t": tx_id},
        )
        return [(r[0], r[1]) for r in rows]


async def test_deposit_through_the_bank_credits_once_even_when_delivered_twice(stack: Stack) -> None:
    customer = await make_user(stack)
    stack.bank_state.faults.append({"kind": "webhook_duplicate", "count": 1})
    sent = await deposit_gbp(stack, customer, "250.00")
    # Redeliver the same event once more, after the first credit.
    deliveries = [d for d in stack.bank_state.deliveries.values() if sent["bank_tx_id"] in d.body]
    assert len(deliveries) == 2
    await stack.bank("POST", f"/_control/webhooks/{deliveries[0].id}/redeliver")
    await asyncio.sleep(0.5)
    assert (await balance(stack, customer.id, "GBP"))[0] == Decimal("250.00")
    assert await _deposit_rows(stack, sent["bank_tx_id"]) == [("CONFIRMED", Decimal("250.00"))]
    async with stack.http() as c:
        r = await c.get("/api/v1/deposits", headers=customer.headers())
        assert [(d["amount"], d["status"]) for d in r.json()["deposits"]] == [("250.00", "CONFIRMED")]
        # The payer's account is now the customer's verified bank account.
        r = await c.get("/api/v1/bank-accounts", headers=customer.headers())
        assert [a["verified"] for a in r.json()] == [True]


async def test_concurrent_duplicate_webhooks_credit_once(stack: Stack) -> None:
    customer = await make_user(stack)
    reference = await _reference(stack, customer.headers())
    body = _event("fps_concurrent_" + customer.id.hex[:8], reference, "100.00")
    async with stack.http() as c:
        answers = await asyncio.gather(
            *(c.post("/api/v1/webhooks/bank", content=body, headers=_signed(stack, body)) for _ in range(8))
        )
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert sorted(r.json()["status"] for r in answers).count("accepted") == 1

    async def credited() -> bool:
        return (await balance(stack, customer.id, "GBP"))[0] == Decimal("100.00")

    await wait_for(credited)
    await asyncio.sleep(0.3)
    assert (await balance(stack, customer.id, "GBP"))[0] == Decimal("100.00")


async def test_bad_signature_and_stale_timestamp_are_refused_and_record_nothing(stack: Stack) -> None:
    customer = await make_user(stack)
    reference = await _reference(stack, customer.headers())
    tx = "fps_forged_" + customer.id.hex[:8]
    body = _event(tx, reference, "9999.00")
    async with stack.http() as c:
        forged = await c.post(
            "/api/v1/webhooks/bank", content=body, headers=_signed(stack, body, secret="wrong")
        )
        stale = await c.post(
            "/api/v1/webhooks/bank", content=body, headers=_signed(stack, body, ts=int(time.time()) - 3600)
        )
        tampered = await c.post(
            "/api/v1/webhooks/bank",
            content=body.replace(b"9999.00", b"99999.00"),
            headers=_signed(stack, body),
        )
        unsigned = await c.post(
            "/api/v1/webhooks/bank", content=body, headers={"Content-Type": "application/json"}
        )
    for r in (forged, stale, tampered, unsigned):
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "invalid_signature"
    await asyncio.sleep(0.3)
    assert await _deposit_rows(stack, tx) == []
    assert (await balance(stack, customer.id, "GBP"))[0] == 0


async def test_unknown_reference_goes_to_suspense_with_an_ops_alert(stack: Stack) -> None:
    ledger = Ledger(stack.engine)
    before = (await ledger.house_balance(HouseAccount.SUSPENSE, "GBP")).balance
    sent = await stack.bank("POST", "/_control/payments", json={"reference": "NOBODY-123", "amount": "42.10"})

    async def booked() -> bool:
        return await _deposit_rows(stack, sent["bank_tx_id"]) == [("SUSPENSE", Decimal("42.10"))]

    await wait_for(booked)
    after = (await ledger.house_balance(HouseAccount.SUSPENSE, "GBP")).balance
    assert after - before == Decimal("42.10")
    async with stack.engine.connect() as conn:
        alerts = (
            await conn.execute(
                text("SELECT details FROM audit_log WHERE action = 'ops.alert.deposit_unattributed'")
            )
        ).all()
    assert any(a[0]["bank_tx_id"] == sent["bank_tx_id"] for a in alerts)


async def test_deposit_email_is_sent(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "10.00")

    async def mailed() -> bool:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"{stack.mail_url}/messages", params={"to": customer.email})
            return any("Deposit credited" in m.get("subject", "") for m in r.json())

    await wait_for(mailed)


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def _raw_event(tx_id: str, **data: object) -> bytes:
    return json.dumps(
        {"id": f"evt_{tx_id}", "type": "payment.received", "data": {"bank_tx_id": tx_id, **data}}
    ).encode()


async def _suspense(stack: Stack, external_id: str) -> list[tuple[str, str, str, str]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT currency, amount, reason, status FROM deposit_suspense "
                "WHERE source = 'bank' AND external_id = :x"
            ),
            {"x": external_id},
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_signed_impossible_bank_events_are_held_in_suspense_with_an_alert_and_acknowledged(
    stack: Stack, caplog: pytest.LogCaptureFixture, database_url: str
) -> None:
    """Issue 11 item 16: a validly signed `currency: "BTC"` credited BTC from bank:cash; negative and
    sub-penny amounts left the deposit saga retrying for ever. Now each is held, acknowledged, alerted."""
    customer = await make_user(stack)
    reference = await _reference(stack, customer.headers())
    tag = customer.id.hex[:8]
    cases: dict[str, tuple[dict[str, Any], str]] = {
        f"fps_btc_{tag}": ({"currency": "BTC", "amount": "2.5"}, "unlisted_asset"),
        f"fps_neg_{tag}": ({"currency": "GBP", "amount": "-10.00"}, "amount_not_positive"),
        f"fps_zero_{tag}": ({"currency": "GBP", "amount": "0.00"}, "amount_not_positive"),
        f"fps_subpenny_{tag}": ({"currency": "GBP", "amount": "10.001"}, "amount_finer_than_scale"),
        f"fps_nan_{tag}": ({"currency": "GBP", "amount": "NaN"}, "malformed_payment"),
        f"fps_float_{tag}": ({"currency": "GBP", "amount": 10.5}, "amount_not_a_string"),
        f"fps_noref_{tag}": ({"currency": "GBP", "amount": "10.00", "reference": None}, "malformed_payment"),
        # Longer than the column it would land in: was a retry loop against the database.
        "fps_" + "x" * 120 + f"_{tag}": ({"currency": "GBP", "amount": "10.00"}, "malformed_payment"),
        # PostgreSQL text refuses NUL: was a 500 at the webhook, or a saga retrying for ever.
        f"fps_nul_{tag}": (
            {"currency": "GBP", "amount": "10.00", "payer_name": "A\u0000Customer", "x\u0000": "\u0000"},
            "malformed_payment",
        ),
        f"fps_sortcode_{tag}": (
            {"currency": "GBP", "amount": "10.00", "payer_sort_code": "11-22-33"},
            "malformed_payment",
        ),
    }
    caplog.set_level(logging.WARNING, logger="broker.payments")
    async with stack.http() as c:
        for tx, (fields, _) in cases.items():
            body = _raw_event(tx, **{"reference": reference, "payer_name": "A Customer", **fields})
            for _ in range(2):  # a redelivery changes nothing
                r = await c.post("/api/v1/webhooks/bank", content=body, headers=_signed(stack, body))
                assert r.status_code == 200, r.text
                assert r.json()["status"] == "held"
    for tx, (fields, reason) in cases.items():
        held = await _suspense(stack, tx)
        assert [(h[2], h[3]) for h in held] == [(reason, "OPEN")], (tx, held)
        assert held[0][1] == str(fields["amount"])  # verbatim, never rounded
        assert await _deposit_rows(stack, tx) == []
        with pytest.raises(RPCError):  # no saga was started for it
            await stack.client.get_workflow_handle(deposit_workflow_id(tx)).describe()
    for currency in ("GBP", "BTC"):
        assert await balance(stack, customer.id, currency) == (Decimal(0), Decimal(0))
    async with stack.engine.connect() as conn:
        alerts = (
            await conn.execute(
                text(
                    "SELECT details->>'external_id' FROM audit_log WHERE action = 'ops.alert.deposit_held' "
                    "AND details->>'external_id' LIKE :t"
                ),
                {"t": f"%{tag}"},
            )
        ).all()
    assert sorted(a[0] for a in alerts) == sorted(cases)  # one alert each, none for the redelivery
    logged = [r.getMessage() for r in caplog.records if "ops.alert.deposit_held" in r.getMessage()]
    assert any(f"fps_btc_{tag}" in m for m in logged)

    # Ops see them in the operator CLI and close one once dealt with.
    listed = _cli(database_url, "deposit-suspense")
    assert listed.returncode == 0 and f"fps_btc_{tag}" in listed.stdout, listed.stderr
    async with stack.engine.connect() as conn:
        item = (
            await conn.execute(
                text("SELECT id FROM deposit_suspense WHERE external_id = :x"), {"x": f"fps_btc_{tag}"}
            )
        ).scalar_one()
    done = _cli(database_url, "resolve-deposit-suspense", str(item), "--reason", "returned to sender")
    assert done.returncode == 0, done.stderr
    assert (await _suspense(stack, f"fps_btc_{tag}"))[0][3] == "RESOLVED"
    again = _cli(database_url, "resolve-deposit-suspense", str(item), "--reason", "twice")
    assert again.returncode != 0


async def test_a_deposit_saga_given_an_impossible_payment_finishes_held_instead_of_retrying(
    stack: Stack,
) -> None:
    """Defence behind the edge: a saga started with a non-GBP or sub-penny payment (e.g. recorded before
    the webhook checked) ends HELD_FOR_REVIEW with the payment in suspense; nothing is credited."""
    customer = await make_user(stack)
    reference = await _reference(stack, customer.headers())
    for currency, amount in (("BTC", "2.5"), ("GBP", "0.001")):
        tx = f"fps_saga_{currency}_{customer.id.hex[:8]}"
        result = await stack.client.execute_workflow(
            DepositWorkflow.run,
            BankPayment(bank_tx_id=tx, amount=Decimal(amount), currency=currency, reference=reference),
            id=deposit_workflow_id(tx),
            task_queue=task_queues.PAYMENTS,
            execution_timeout=timedelta(seconds=20),
        )
        assert (result.status, result.user_id) == ("HELD_FOR_REVIEW", None)
        assert [h[2] for h in await _suspense(stack, tx)] == [
            "unlisted_asset" if currency == "BTC" else "amount_finer_than_scale"
        ]
    for currency in ("GBP", "BTC"):
        assert await balance(stack, customer.id, currency) == (Decimal(0), Decimal(0))

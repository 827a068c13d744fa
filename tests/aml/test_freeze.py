"""A frozen customer cannot trade or withdraw (the withdrawal waits with its hold), deposits are still
credited, nobody tells them why, and lifting the freeze takes two different compliance users."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from tests.aml.conftest import mails_to, open_case, staff, tipping_off
from tests.payments.conftest import Stack, balance, deposit_gbp, make_user, wait_for, withdrawal_account

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _withdrawal(stack: Stack, customer: Any, withdrawal_id: str) -> dict[str, Any]:
    async with stack.http() as c:
        r = await c.get(f"/api/v1/withdrawals/{withdrawal_id}", headers=customer.headers())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_frozen_customer_cannot_trade_or_withdraw_but_deposits_are_credited(
    stack: Stack, orders_worker: None
) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "500.00")
    account = await withdrawal_account(stack, customer)
    case_id = await open_case(stack, customer.id)
    alice, bob, carol = await staff(stack), await staff(stack), await staff(stack)

    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/freeze",
            json={"reason": "structuring pattern, reporting"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] is True and r.json()["stage"] == "frozen"

        # Trading: refused at the saga's accept step, in neutral words.
        r = await c.post(
            "/api/v1/orders",
            json={"symbol": "BTC-GBP", "side": "BUY", "type": "LIMIT", "amount": "0.01", "price": "1000"},
            headers=customer.headers(),
        )
        assert r.status_code == 202, r.text
        order_id = r.json()["id"]

        async def order_final() -> dict[str, Any] | None:
            got = await c.get(f"/api/v1/orders/{order_id}", headers=customer.headers())
            o: dict[str, Any] = got.json()
            return o if o["status"] in ("REJECTED", "FAILED", "FILLED", "CANCELLED") else None

        order = await wait_for(order_final)
        assert order["status"] == "REJECTED", order
        assert tipping_off(str(order)) == [], order

        # Withdrawing: accepted, funds held, waiting in a visible state with a neutral reason.
        r = await c.post(
            "/api/v1/withdrawals",
            json={"currency": "GBP", "amount": "100.00", "bank_account_id": str(account)},
            headers=customer.headers(totp=True),
        )
        assert r.status_code == 201, r.text
        withdrawal_id = r.json()["id"]

        async def waiting() -> dict[str, Any] | None:
            w = await _withdrawal(stack, customer, withdrawal_id)
            return w if w["status"] == "HALTED" else None

        w = await wait_for(waiting)
        assert w["reason"] == "your withdrawal is under review"
        assert tipping_off(str(w)) == []
        fee = stack.settings.withdrawal_fees.get("GBP", Decimal(0))
        assert await balance(stack, customer.id, "GBP") == (Decimal("500.00"), Decimal("100.00") + fee)

    # Deposits are still credited while frozen.
    await deposit_gbp(stack, customer, "50.00")
    assert (await balance(stack, customer.id, "GBP"))[0] == Decimal("550.00")
    assert (await _withdrawal(stack, customer, withdrawal_id))["status"] == "HALTED"  # still waiting

    # Unfreezing: the one who asks cannot also confirm; a second compliance user can.
    async with stack.http() as c:
        base = f"/api/v1/admin/aml/customers/{customer.id}/unfreeze"
        r = await c.post(f"{base}/confirm", headers=carol.headers(totp=True))
        assert r.status_code == 409 and r.json()["code"] == "freeze_refused", r.text  # nobody asked yet
        r = await c.post(f"{base}/request", headers=alice.headers(totp=True))
        assert r.status_code == 200 and r.json()["frozen"] is True, r.text
        r = await c.post(f"{base}/confirm", headers=alice.headers(totp=True))
        assert r.status_code == 409 and r.json()["code"] == "second_person_required", r.text
        r = await c.post(f"{base}/confirm", headers=customer.headers(totp=True))
        assert r.status_code == 403, r.text  # not compliance staff
        r = await c.post(f"{base}/confirm", headers=bob.headers(totp=True))
        assert r.status_code == 200, r.text
        assert r.json()["frozen"] is False and r.json()["lifted_by"] == str(bob.id)

    # The withdrawal carries on by itself and completes, its hold committed.
    async def completed() -> dict[str, Any] | None:
        w = await _withdrawal(stack, customer, withdrawal_id)
        return w if w["status"] == "COMPLETED" else None

    await wait_for(completed, timeout=60)
    assert await balance(stack, customer.id, "GBP") == (Decimal("450.00") - fee, Decimal(0))
    async with stack.engine.connect() as conn:
        refused = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE action = 'aml.unfreeze.refused' AND target_id = :u"
                ),
                {"u": str(customer.id)},
            )
        ).scalar_one()
    assert refused == 1
    for mail in await mails_to(stack, customer.email):
        assert tipping_off(f"{mail.get('subject')} {mail.get('content')}") == [], mail

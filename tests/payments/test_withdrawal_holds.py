"""A withdrawal's holds follow the one rule every hold owner follows (services/holds.py): created only
while the withdrawal is live, released in full with its final status (every hold that references it, not
only the one the saga remembers), and any hold outliving it reported by the periodic hold audit."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text

from models.holds import HoldAuditInput
from services import payments
from services.holds import WITHDRAWAL_HOLD
from services.ledger import Ledger
from temporal import task_queues
from tests.payments.conftest import Customer, Stack, balance, deposit_gbp, make_user, withdrawal_account
from tests.payments.test_withdrawal_safety import _until_status, _withdraw
from workflows.hold_audit import HoldAuditWorkflow

D = Decimal


async def holds_of(stack: Stack, reference_id: uuid.UUID | str) -> list[tuple[str, Decimal]]:
    async with stack.engine.connect() as c:
        rows = await c.execute(
            text("SELECT status, amount FROM holds WHERE reference_id = :r ORDER BY created_at"),
            {"r": reference_id},
        )
        return [(r[0], r[1]) for r in rows]


async def stray_hold(
    stack: Stack, customer: Customer, withdrawal_id: uuid.UUID | str, amount: str
) -> uuid.UUID:
    """A hold for the withdrawal that its saga does not know of (a replay that raced the first reserve)."""
    ledger = Ledger(stack.engine)
    account = await ledger.customer_account(customer.id, "GBP")
    hold = await ledger.reserve(
        account, "GBP", D(amount), reference_type=WITHDRAWAL_HOLD,
        reference_id=uuid.UUID(str(withdrawal_id)), step=f"stray-{uuid.uuid4()}",
    )  # fmt: skip
    return hold.hold_id


async def test_a_rejected_withdrawal_releases_every_hold_that_references_it(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    approver = await make_user(stack, roles=["approver"])
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "11000.00"})).json()["id"]
    await _until_status(stack, wid, "AWAITING_APPROVAL")
    await stray_hold(stack, customer, wid, "7.50")
    assert (await balance(stack, customer.id, "GBP"))[1] > D("11000")

    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/reject",
            json={"reason": "source of funds unclear"},
            headers=approver.headers(totp=True),
        )
    assert r.status_code == 200, r.text
    await _until_status(stack, wid, "REJECTED")

    assert [status for status, _ in await holds_of(stack, wid)] == ["released", "released"]
    assert await balance(stack, customer.id, "GBP") == (D("13000.00"), D(0))


async def test_completing_a_withdrawal_releases_any_other_hold_of_it(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "100.00")
    wid = uuid.uuid4()
    accepted = await payments.accept_withdrawal(
        stack.engine, withdrawal_id=wid, user_id=customer.id, currency="GBP", amount=D("50.00"),
        price_gbp=None, address_id=None, bank_account_id=await withdrawal_account(stack, customer),
        policy=payments.WithdrawalPolicy(D("10000"), D("50000"), {"GBP": D("0.50")}),
        crypto_provider="binance",
    )  # fmt: skip
    ledger = Ledger(stack.engine)
    account = await ledger.customer_account(customer.id, "GBP")
    hold = await ledger.reserve(
        account, "GBP", D("50.50"), reference_type=WITHDRAWAL_HOLD, reference_id=wid, step="reserve"
    )
    await stray_hold(stack, customer, wid, "3.00")

    await payments.complete_withdrawal(
        stack.engine, ledger, withdrawal_id=wid, user_id=customer.id, currency="GBP", amount=D("50.00"),
        fee=accepted.fee, hold_id=hold.hold_id, provider="bank", provider_ref="x", tx_hash=None,
    )  # fmt: skip

    assert sorted(status for status, _ in await holds_of(stack, wid)) == ["committed", "released"]
    assert await balance(stack, customer.id, "GBP") == (D("49.50"), D(0))


async def test_the_hold_audit_reports_a_hold_that_outlived_its_withdrawal(stack: Stack) -> None:
    """The scheduled audit (ops queue) covers withdrawals: a hold whose withdrawal is COMPLETED is
    reported with the withdrawal's status; a live withdrawal's hold is not."""
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    done = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "40.00"})).json()["id"]
    await _until_status(stack, done, "COMPLETED")
    live = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "11000.00"})).json()["id"]
    await _until_status(stack, live, "AWAITING_APPROVAL")
    stray = await stray_hold(stack, customer, done, "2.00")
    try:
        result = await stack.client.execute_workflow(
            HoldAuditWorkflow.run,
            HoldAuditInput(),
            id=f"hold-audit-{uuid.uuid4()}",
            task_queue=task_queues.OPS,
        )
        reported = {h.hold_id: h for h in result.orphaned}
        assert reported[stray].reference_type == WITHDRAWAL_HOLD
        assert str(reported[stray].reference_id) == done
        assert reported[stray].owner_status == "COMPLETED"
        assert reported[stray].remaining == D("2.00")
        assert all(str(h.reference_id) != live for h in result.orphaned)
    finally:
        await Ledger(stack.engine).release(stray)
        handle = stack.client.get_workflow_handle(f"withdrawal-{live}")
        await handle.execute_update("cancel")
        await _until_status(stack, live, "CANCELLED")

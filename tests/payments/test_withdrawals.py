"""The withdrawal saga end to end: API (TOTP, limits, whitelist), Temporal, the sandbox bank and venue."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from api.sagas import start_withdrawal
from models.payments import Decision, WithdrawalInput
from services import payments
from services.decision_tokens import DecisionTokens
from services.ledger import Ledger
from temporal.search_attributes import ensure_registered
from tests.payments.conftest import (
    Customer,
    Stack,
    balance,
    deposit_gbp,
    make_user,
    wait_for,
    withdrawal_account,
)
from workers.registry import Dependencies, build
from workflows.deposits import DepositWorkflow
from workflows.withdrawals import WithdrawalWorkflow, withdrawal_workflow_id


async def _withdraw(stack: Stack, customer: Customer, body: dict[str, Any]) -> Any:
    if body.get("currency") == "GBP" and "bank_account_id" not in body:  # a withdrawal names its account
        body = {**body, "bank_account_id": str(await withdrawal_account(stack, customer))}
    async with stack.http() as c:
        return await c.post("/api/v1/withdrawals", json=body, headers=customer.headers(totp=True))


async def _status(stack: Stack, customer: Customer, wid: str, *wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        async with stack.http() as c:
            r = await c.get(f"/api/v1/withdrawals/{wid}", headers=customer.headers())
            body: dict[str, Any] = r.json()
            return body if body["status"] in wanted else None

    result: dict[str, Any] = await wait_for(check)
    return result


async def _funded(stack: Stack, amount: str, tier: int = 3) -> Customer:
    customer = await make_user(stack, tier=tier)
    await deposit_gbp(stack, customer, amount)
    return customer


async def _decide(stack: Stack, staff: Customer, wid: str, kind: str, reason: str = "checked") -> Any:
    async with stack.http() as c:
        return await c.post(
            f"/api/v1/admin/withdrawals/{wid}/{kind}",
            json={"reason": reason},
            headers=staff.headers(totp=True),
        )


def _token(stack: Stack, staff_id: uuid.UUID, wid: str, action: str, detail: str = "") -> str:
    """A decision token as the API signs it after a TOTP check."""
    return DecisionTokens.from_secret(stack.settings.jwt_secret).issue(
        actor_id=staff_id, withdrawal_id=uuid.UUID(wid), action=action, now=datetime.now(UTC), detail=detail
    )


async def test_small_gbp_withdrawal_completes_on_its_own_and_books_the_fee(stack: Stack) -> None:
    customer = await _funded(stack, "800.00")
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "500.00"})
    assert r.status_code == 201, r.text
    w = await _status(stack, customer, r.json()["id"], "COMPLETED")
    assert w["fee"] == "0.50" and w["provider_ref"]
    assert await balance(stack, customer.id, "GBP") == (Decimal("299.50"), Decimal(0))
    payouts = [p for p in stack.bank_state.payouts.values() if p.external_id == w["id"]]
    assert len(payouts) == 1 and payouts[0].amount == "500.00"


async def test_over_limit_is_refused_with_the_reason(stack: Stack) -> None:
    customer = await _funded(stack, "900.00", tier=1)
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "600.00"})
    assert r.status_code == 422 and r.json()["code"] == "withdrawal_limit_exceeded"
    assert "£500" in r.json()["detail"]
    assert await balance(stack, customer.id, "GBP") == (Decimal("900.00"), Decimal(0))


async def test_totp_is_required(stack: Stack) -> None:
    customer = await _funded(stack, "50.00")
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/withdrawals", json={"currency": "GBP", "amount": "10.00"}, headers=customer.headers()
        )
    assert r.status_code == 403 and r.json()["code"] == "totp_required", r.text


async def test_above_threshold_waits_then_approve_completes_and_self_and_non_approver_are_refused(
    stack: Stack,
) -> None:
    customer = await _funded(stack, "20000.00")
    approver = await make_user(stack, roles=["approver"])
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "12000.00"})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    await _status(stack, customer, wid, "AWAITING_APPROVAL")
    assert await balance(stack, customer.id, "GBP") == (Decimal("20000.00"), Decimal("12000.50"))
    async with stack.http() as c:
        queue = await c.get("/api/v1/admin/withdrawals/pending", headers=approver.headers())
        assert wid in [q["id"] for q in queue.json()]
        refused = await c.get("/api/v1/admin/withdrawals/pending", headers=customer.headers())
        assert refused.status_code == 403
    # The requester signalling through Temporal (bypassing the API's role check) is refused by the saga.
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
    mine = _token(stack, customer.id, wid, "approve")
    outcome = await handle.execute_update(
        "approve_withdrawal", Decision(approver_id=customer.id, reason="mine", token=mine), result_type=dict
    )
    assert outcome["accepted"] is False and outcome["code"] == "self_approval"
    ops_only = await make_user(stack, roles=["ops"])
    theirs = _token(stack, ops_only.id, wid, "approve")
    outcome = await handle.execute_update(
        "approve_withdrawal", Decision(approver_id=ops_only.id, reason="ops", token=theirs), result_type=dict
    )
    assert outcome["accepted"] is False and outcome["code"] == "not_an_approver"
    assert (await _status(stack, customer, wid, "AWAITING_APPROVAL"))["status"] == "AWAITING_APPROVAL"
    r = await _decide(stack, approver, wid, "approve")
    assert r.status_code == 200 and r.json()["code"] == "approved", r.text
    await _status(stack, customer, wid, "COMPLETED")
    assert await balance(stack, customer.id, "GBP") == (Decimal("7999.50"), Decimal(0))


async def test_reject_releases_the_funds(stack: Stack) -> None:
    customer = await _funded(stack, "15000.00")
    approver = await make_user(stack, roles=["approver"])
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "10000.00"})).json()["id"]
    await _status(stack, customer, wid, "AWAITING_APPROVAL")
    # The signal path, as `temporal workflow signal --name reject` sends it, with a decision token.
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
    token = _token(stack, approver.id, wid, "reject")
    await handle.signal("reject", Decision(approver_id=approver.id, reason="unusual pattern", token=token))
    w = await _status(stack, customer, wid, "REJECTED")
    assert "unusual pattern" in w["reason"]
    assert await balance(stack, customer.id, "GBP") == (Decimal("15000.00"), Decimal(0))


async def test_above_dual_threshold_needs_two_distinct_approvers(stack: Stack) -> None:
    customer = await make_user(stack)
    account_id = uuid.uuid4()
    async with stack.engine.begin() as conn:  # a confirmed bank account and funds, without a £60k webhook
        await conn.execute(
            text(
                "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, verified, "
                "status, usable_from) VALUES (:id, :u, 'A Customer', '112233', '44556677', true, "
                "'CONFIRMED', now() - interval '1 day')"
            ),
            {"id": account_id, "u": customer.id},
        )
    await deposit_gbp(stack, customer, "60000.00")
    async with stack.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET kyc_tier = 3 WHERE id = :u"), {"u": customer.id})
    # Tier 3 allows £50k per 24 h: raise it for this one customer through the limit table? No — use £50k.
    first, second = await make_user(stack, roles=["approver"]), await make_user(stack, roles=["approver"])
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/withdrawals",
            json={"currency": "GBP", "amount": "50000.00", "bank_account_id": str(account_id)},
            headers=customer.headers(totp=True),
        )
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["approvals_required"] == 1  # £50,000 is not above £50k
    # A decision counts only once the saga waits for one (after its AML screening step): sent earlier it is
    # refused (409 not_awaiting_approval), which a slow screening in the full suite once showed.
    await _status(stack, customer, w["id"], "AWAITING_APPROVAL")
    rejected = await _decide(stack, first, w["id"], "reject", "test done")
    assert rejected.status_code == 200 and rejected.json()["code"] == "rejected", rejected.text
    await _status(stack, customer, w["id"], "REJECTED")
    # Above £50k (limit permitting): two distinct approvals. Driven directly through the saga.
    wid = uuid.uuid4()
    accepted = await payments.accept_withdrawal(
        stack.engine,
        withdrawal_id=wid,
        user_id=customer.id,
        currency="GBP",
        amount=Decimal("1000.00"),
        price_gbp=None,
        address_id=None,
        bank_account_id=account_id,
        policy=payments.WithdrawalPolicy(Decimal("500"), Decimal("900"), {"GBP": Decimal("0.50")}),
        crypto_provider="binance",
    )
    assert accepted.approvals_required == 2
    handle = await start_withdrawal(stack.client, _input(customer.id, wid, accepted))
    await _status(stack, customer, str(wid), "AWAITING_APPROVAL")
    one = await _decide(stack, first, str(wid), "approve")
    assert one.json()["code"] == "approval_recorded"
    again = await _decide(stack, first, str(wid), "approve")
    assert again.json()["code"] == "approval_recorded"  # the same approver twice still counts once
    assert (await handle.query("state", result_type=dict))["status"] == "AWAITING_APPROVAL"
    two = await _decide(stack, second, str(wid), "approve")
    assert two.json()["code"] == "approved"
    await _status(stack, customer, str(wid), "COMPLETED")


def _input(
    user_id: uuid.UUID, wid: uuid.UUID, accepted: payments.AcceptedWithdrawal, **kw: Any
) -> WithdrawalInput:
    return WithdrawalInput(
        withdrawal_id=wid,
        user_id=user_id,
        currency="GBP",
        amount=Decimal("1000.00"),
        fee=accepted.fee,
        notional_gbp=accepted.notional_gbp,
        destination=accepted.destination,
        provider=accepted.provider,
        approvals_required=accepted.approvals_required,
        **kw,
    )


async def test_bank_payout_failure_releases_the_funds(stack: Stack) -> None:
    customer = await _funded(stack, "300.00")
    stack.bank_state.faults.append({"kind": "payout_fail", "count": 1, "reason": "account closed"})
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "200.00"})).json()["id"]
    w = await _status(stack, customer, wid, "FAILED")
    assert "account closed" in w["reason"]
    assert await balance(stack, customer.id, "GBP") == (Decimal("300.00"), Decimal(0))


async def test_payout_whose_answer_never_came_is_resolved_by_asking_not_resent(stack: Stack) -> None:
    customer = await _funded(stack, "300.00")
    stack.bank_state.faults.append({"kind": "payout_timeout", "count": 1, "hang_ms": 8000})
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "100.00"})).json()["id"]
    await _status(stack, customer, wid, "COMPLETED")
    assert len([p for p in stack.bank_state.payouts.values() if p.external_id == wid]) == 1


async def test_a_halted_currency_waits_then_goes_when_lifted(stack: Stack) -> None:
    customer = await _funded(stack, "300.00")
    await payments.set_halt(stack.engine, "GBP", "reconciliation break", None, "test")
    try:
        wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "100.00"})).json()["id"]
        w = await _status(stack, customer, wid, "HALTED")
        assert "reconciliation break" in w["reason"]
        assert (await balance(stack, customer.id, "GBP"))[1] == Decimal("100.50")
    finally:
        await payments.lift_halt(stack.engine, "GBP", None, "test")
    await _status(stack, customer, wid, "COMPLETED")


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_cli_halts_and_resumes_withdrawals_audited(stack: Stack, database_url: str) -> None:
    customer = await _funded(stack, "300.00")
    done = await asyncio.to_thread(_cli, database_url, "halt-withdrawals", "gbp", "--reason", "chain stall")
    try:
        assert done.returncode == 0, done.stderr
        assert await payments.halt_reason(stack.engine, "GBP") == "chain stall"
        wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "100.00"})).json()["id"]
        w = await _status(stack, customer, wid, "HALTED")
        assert "chain stall" in w["reason"]
    finally:
        resumed = await asyncio.to_thread(_cli, database_url, "resume-withdrawals", "GBP")
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    assert await payments.halt_reason(stack.engine, "GBP") is None
    await _status(stack, customer, wid, "COMPLETED")
    again = await asyncio.to_thread(_cli, database_url, "resume-withdrawals", "GBP")
    assert again.returncode == 0 and "were not halted" in again.stdout
    bad = await asyncio.to_thread(_cli, database_url, "halt-withdrawals", "DOGE", "--reason", "x")
    assert bad.returncode != 0
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_type, details->>'reason' FROM audit_log WHERE target_type = 'currency' "
                "AND target_id = 'GBP' AND actor_type = 'cli' ORDER BY created_at DESC LIMIT 3"
            )
        )
        actions = [(r[0], r[1], r[2]) for r in rows]
    assert actions == [
        ("withdrawals.unhalt", "cli", None),
        ("withdrawals.unhalt", "cli", None),
        ("withdrawals.halt", "cli", "chain stall"),
    ]


async def test_customer_can_cancel_while_waiting(stack: Stack) -> None:
    customer = await _funded(stack, "11000.00")
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "10500.00"})).json()["id"]
    await _status(stack, customer, wid, "AWAITING_APPROVAL")
    other = await make_user(stack)
    async with stack.http() as c:
        assert (await c.get(f"/api/v1/withdrawals/{wid}", headers=other.headers())).status_code == 404
        assert (await c.post(f"/api/v1/withdrawals/{wid}/cancel", headers=other.headers())).status_code == 404
        r = await c.post(f"/api/v1/withdrawals/{wid}/cancel", headers=customer.headers())
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text
    assert await balance(stack, customer.id, "GBP") == (Decimal("11000.00"), Decimal(0))


async def test_crypto_address_in_cool_down_is_refused_then_usable(stack: Stack) -> None:
    customer = await make_user(stack)
    address = "bc1q" + uuid.uuid4().hex
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/withdrawal-addresses",
            json={"currency": "BTC", "address": address, "label": "cold"},
            headers=customer.headers(totp=True),
        )
        assert r.status_code == 201, r.text
        address_id = r.json()["id"]
    # Fund BTC through the ledger as a confirmed provider deposit would.
    await payments.credit_crypto_deposit(
        stack.engine,
        Ledger(stack.engine),
        provider="binance",
        tx_id=uuid.uuid4().hex,
        currency="BTC",
        amount=Decimal("0.01"),
        address=None,
        confirmations=6,
    )  # fmt: skip  (unattributed: suspense; the customer is credited below)
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO crypto_deposit_addresses (id, user_id, provider, currency, address) "
                 "VALUES (:id, :u, 'binance', 'BTC', :a)"),
            {"id": uuid.uuid4(), "u": customer.id, "a": "dep-" + address},
        )  # fmt: skip
    await payments.credit_crypto_deposit(
        stack.engine, Ledger(stack.engine), provider="binance", tx_id=uuid.uuid4().hex,
        currency="BTC", amount=Decimal("0.01"), address="dep-" + address, confirmations=6,
    )  # fmt: skip
    r = await _withdraw(stack, customer, {"currency": "BTC", "amount": "0.005", "address_id": address_id})
    assert r.status_code == 422 and r.json()["code"] == "address_cooling_down", r.text
    async with stack.engine.begin() as conn:  # 24 h later
        await conn.execute(
            text("UPDATE withdrawal_addresses SET usable_from = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(minutes=1), "id": address_id},
        )
    r = await _withdraw(stack, customer, {"currency": "BTC", "amount": "0.005", "address_id": address_id})
    assert r.status_code == 201, r.text
    w = await _status(stack, customer, r.json()["id"], "COMPLETED")
    assert w["fee"] == "0.00020000" and w["provider_ref"]
    assert (await balance(stack, customer.id, "BTC"))[0] == Decimal("0.0048")


async def test_no_decision_in_72h_rejects_and_releases(stack: Stack, task_queue: str) -> None:
    """On the time-skipping server: the durable 72 h timer fires in well under a second of wall time."""
    customer = await _funded(stack, "20000.00")
    wid = uuid.uuid4()
    accepted = await payments.accept_withdrawal(
        stack.engine,
        withdrawal_id=wid,
        user_id=customer.id,
        currency="GBP",
        amount=Decimal("1000.00"),
        price_gbp=None,
        address_id=None,
        bank_account_id=await withdrawal_account(stack, customer),
        policy=payments.WithdrawalPolicy(Decimal("500"), Decimal("50000"), {"GBP": Decimal("0.50")}),
        crypto_provider="binance",
    )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)),
        data_converter=stack.client.data_converter,
    )
    try:
        await ensure_registered(env.client, "default")
        deps = Dependencies(
            settings=stack.settings, engine=stack.engine, adapters={}, email=None, bank=object()
        )
        spec = build(deps)["broker-payments"]
        async with Worker(
            env.client, task_queue=task_queue, workflows=spec.workflows, activities=spec.activities
        ):
            result = await env.client.execute_workflow(
                WithdrawalWorkflow.run,
                _input(customer.id, wid, accepted),
                id=withdrawal_workflow_id(wid),
                task_queue=task_queue,
            )
    finally:
        await env.shutdown()
    assert result.status == "REJECTED" and "72 h" in (result.reason or "")
    assert await balance(stack, customer.id, "GBP") == (Decimal("20000.00"), Decimal(0))


async def test_histories_replay(stack: Stack) -> None:
    """Every payments workflow that ran in this session replays deterministically."""
    histories: list[WorkflowHistory] = []
    async for wf in stack.client.list_workflows(
        "WorkflowType = 'WithdrawalWorkflow' OR WorkflowType = 'DepositWorkflow'"
    ):
        histories.append(await stack.client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
        if len(histories) >= 25:
            break
    assert histories
    replayer = Replayer(
        workflows=[WithdrawalWorkflow, DepositWorkflow], data_converter=stack.client.data_converter
    )
    for history in histories:
        await replayer.replay_workflow(history)

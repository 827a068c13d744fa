"""Withdrawals that must not pay twice, stick, or take a decision nobody proved (issues 11 and 12).

Through the real stack: the API, Temporal, PostgreSQL, the sandbox bank and the Binance sandbox with its
faults. The stack's settings make "absent" mean 3 empty lookups 0.3 s apart, so these run in seconds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from temporalio.client import WorkflowFailureError

from api.sagas import start_withdrawal
from models.payments import Decision, PayoutUpdate, Resolution, WithdrawalInput, WithdrawalState
from sandbox.control import STATE_KEY
from services import payments
from services.decision_tokens import DecisionTokens
from services.ledger import Ledger
from temporal.search_attributes import WITHDRAWAL_STATUS
from tests.payments.conftest import (
    Customer,
    Stack,
    balance,
    deposit_gbp,
    make_user,
    wait_for,
    withdrawal_account,
)
from workflows.withdrawals import WithdrawalWorkflow, withdrawal_workflow_id


async def _withdraw(stack: Stack, customer: Customer, body: dict[str, Any], **headers: str) -> Any:
    if body.get("currency") == "GBP" and "bank_account_id" not in body:  # a withdrawal names its account
        body = {**body, "bank_account_id": str(await withdrawal_account(stack, customer))}
    async with stack.http() as c:
        return await c.post(
            "/api/v1/withdrawals", json=body, headers={**customer.headers(totp=True), **headers}
        )


async def _row(stack: Stack, wid: str) -> dict[str, Any] | None:
    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, reason, hold_id, fee FROM withdrawals WHERE id = :id"), {"id": wid}
            )
        ).first()
    return dict(row._mapping) if row else None


async def _until_status(stack: Stack, wid: str, *wanted: str, timeout: float = 30) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await _row(stack, wid)
        return row if row and row["status"] in wanted else None

    found: dict[str, Any] = await wait_for(check, timeout=timeout)
    return found


async def _alerts(stack: Stack, wid: str, action: str) -> list[dict[str, Any]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_id, details FROM audit_log WHERE target_id = :t AND action = :a "
                "ORDER BY created_at"
            ),
            {"t": wid, "a": action},
        )
        return [dict(r._mapping) for r in rows]


def _token(stack: Stack, actor: uuid.UUID, wid: str, action: str, detail: str = "") -> str:
    return DecisionTokens.from_secret(stack.settings.jwt_secret).issue(
        actor_id=actor, withdrawal_id=uuid.UUID(wid), action=action, now=datetime.now(UTC), detail=detail
    )


async def _btc_customer(stack: Stack, amount: str) -> tuple[Customer, str]:
    """A customer holding `amount` BTC with a whitelisted address past its cool-down."""
    customer = await make_user(stack)
    address = "bc1q" + uuid.uuid4().hex
    address_id = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO withdrawal_addresses (id, user_id, currency, address, usable_from) "
                "VALUES (:id, :u, 'BTC', :a, :t)"
            ),
            {"id": address_id, "u": customer.id, "a": address, "t": datetime.now(UTC) - timedelta(days=2)},
        )
        await conn.execute(
            text(
                "INSERT INTO crypto_deposit_addresses (id, user_id, provider, currency, address) "
                "VALUES (:id, :u, 'binance', 'BTC', :a)"
            ),
            {"id": uuid.uuid4(), "u": customer.id, "a": "dep-" + address},
        )
    await payments.credit_crypto_deposit(
        stack.engine, Ledger(stack.engine), provider="binance", tx_id=uuid.uuid4().hex, currency="BTC",
        amount=Decimal(amount), address="dep-" + address, confirmations=6,
    )  # fmt: skip
    return customer, str(address_id)


def _venue_withdrawals(stack: Stack, wid: str) -> list[Any]:
    venue = stack.binance_app[STATE_KEY].venue
    return [w for w in venue.withdrawals.values() if w.client_id == f"wd{uuid.UUID(wid).hex}"]


async def _binance_fault(stack: Stack, **spec: Any) -> None:
    await stack.binance("POST", "/_control/faults", json=spec)


async def _clear_binance_faults(stack: Stack) -> None:
    await stack.binance("DELETE", "/_control/faults")


# --- issue 11 item 8: a missing record is not a failed payout ------------------------------------------


async def test_a_payout_the_bank_stops_showing_keeps_its_hold_waits_for_ops_then_completes(
    stack: Stack,
) -> None:
    """The bank's lookup shows nothing (and no webhook came): before, that read as "failed", the hold was
    released and the customer could withdraw the money a second time. Now it is unknown: after repeated
    lookups the withdrawal waits in NEEDS_ATTENTION (row, search attribute, admin queue, ops alert) with
    the hold kept; a forged "failed" signal changes nothing; once the bank shows it, it completes."""
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "300.00")
    stack.bank_state.faults.append({"kind": "webhook_drop"})
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "100.00"})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]

    async def sent() -> Any:
        return next((p for p in stack.bank_state.payouts.values() if p.external_id == wid), None)

    payout = await wait_for(sent, interval=0.01)
    hidden = stack.bank_state.payouts.pop(payout.id)  # the bank's records lag: "no such payout"
    try:
        row = await _until_status(stack, wid, "NEEDS_ATTENTION", "FAILED")
        assert row["status"] == "NEEDS_ATTENTION", row
        assert "no record" in row["reason"]
        assert await balance(stack, customer.id, "GBP") == (Decimal("300.00"), Decimal("100.50"))
        handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
        described = await handle.describe()
        assert described.typed_search_attributes.get(WITHDRAWAL_STATUS) == "NEEDS_ATTENTION"
        assert await _alerts(stack, wid, "ops.alert.withdrawal_needs_attention")
        ops = await make_user(stack, roles=["ops"])
        async with stack.http() as c:
            queue = await c.get("/api/v1/admin/withdrawals/attention", headers=ops.headers())
        assert queue.status_code == 200 and wid in [q["id"] for q in queue.json()]
        # Anyone who reaches Temporal "fails" the payout: without the webhook route's proof it is ignored.
        await handle.signal(
            WithdrawalWorkflow.payout_settled,
            PayoutUpdate(payout_id=payout.id, status="failed", reason="forged"),
        )
        await wait_for(lambda: _alerts(stack, wid, "withdrawal.payout_failed.refused"))
        assert (await _row(stack, wid) or {})["status"] == "NEEDS_ATTENTION"
        assert (await balance(stack, customer.id, "GBP"))[1] == Decimal("100.50")
    finally:
        stack.bank_state.payouts[hidden.id] = hidden  # the bank's records catch up
    await _until_status(stack, wid, "COMPLETED")
    assert await balance(stack, customer.id, "GBP") == (Decimal("199.50"), Decimal(0))
    assert len([p for p in stack.bank_state.payouts.values() if p.external_id == wid]) == 1


async def test_a_send_without_answer_and_without_record_is_never_resent_or_released_until_ops_decide(
    stack: Stack,
) -> None:
    """Binance's edge answers 502 to the withdrawal (the venue never got it, but we can't know that) and
    its history shows nothing. Before, the retried step looked up, saw nothing and sent again. Now: no
    second send, hold kept, NEEDS_ATTENTION; a resolution without proof is refused; ops mark it not paid
    (TOTP) and the hold is released."""
    customer, address_id = await _btc_customer(stack, "0.01")
    await _binance_fault(stack, kind="http_error", status=502, count=1, paths=["capital/withdraw/apply"])
    try:
        r = await _withdraw(stack, customer, {"currency": "BTC", "amount": "0.005", "address_id": address_id})
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        row = await _until_status(stack, wid, "NEEDS_ATTENTION", "COMPLETED", "FAILED")
    finally:
        await _clear_binance_faults(stack)
    assert row["status"] == "NEEDS_ATTENTION", row
    await asyncio.sleep(1.0)  # lookups go on; nothing is sent meanwhile
    assert _venue_withdrawals(stack, wid) == []
    assert await balance(stack, customer.id, "BTC") == (Decimal("0.01"), Decimal("0.0052"))
    async with stack.http() as c:  # the money may have left: the customer can't take it back
        cancel = await c.post(f"/api/v1/withdrawals/{wid}/cancel", headers=customer.headers())
    assert cancel.status_code == 409, cancel.text

    ops = await make_user(stack, roles=["ops"])
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
    bare = await handle.execute_update(
        "resolve", Resolution(staff_id=ops.id, paid=False, reason="checked"), result_type=dict
    )
    assert bare["accepted"] is False and bare["code"] == "unproven"
    assert await _alerts(stack, wid, "withdrawal.resolve_not_paid.refused")
    async with stack.http() as c:
        no_totp = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/resolve",
            json={"paid": False, "reason": "no such withdrawal at Binance"},
            headers=ops.headers(),
        )
        assert no_totp.status_code == 403 and no_totp.json()["code"] == "totp_required"
        done = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/resolve",
            json={"paid": False, "reason": "no such withdrawal at Binance"},
            headers=ops.headers(totp=True),
        )
    assert done.status_code == 200 and done.json()["code"] == "resolved_not_paid", done.text
    row = await _until_status(stack, wid, "FAILED")
    assert "marked not paid" in row["reason"]
    assert await balance(stack, customer.id, "BTC") == (Decimal("0.01"), Decimal(0))
    assert _venue_withdrawals(stack, wid) == []


async def test_a_crypto_send_whose_answer_is_lost_is_found_by_our_id_not_sent_again(stack: Stack) -> None:
    customer, address_id = await _btc_customer(stack, "0.01")
    await _binance_fault(
        stack, kind="timeout_after_accept", mode="drop", count=1, paths=["capital/withdraw/apply"]
    )
    try:
        r = await _withdraw(stack, customer, {"currency": "BTC", "amount": "0.005", "address_id": address_id})
        assert r.status_code == 201, r.text
        wid = r.json()["id"]
        await _until_status(stack, wid, "COMPLETED")
    finally:
        await _clear_binance_faults(stack)
    assert len(_venue_withdrawals(stack, wid)) == 1
    assert await balance(stack, customer.id, "BTC") == (Decimal("0.0048"), Decimal(0))


# --- issue 11 item 9: books that cannot be completed wait for ops, hold kept ---------------------------


async def test_books_that_cannot_be_completed_wait_in_needs_attention_until_ops_resolve(stack: Stack) -> None:
    """The money left but the ledger refuses the completion (here: the hold vanished under it). Before, the
    workflow failed with the row PROCESSING and the saga gone. Now it waits in NEEDS_ATTENTION and alerts;
    "paid" cannot complete books that still refuse, so it keeps waiting (a second alert); ops' next answer
    ends it."""
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "300.00")
    stack.bank_state.faults.append({"kind": "webhook_drop"})
    stack.bank_state.settle_after = 3.0
    try:
        r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "100.00"})
        wid = r.json()["id"]
        row = await _until_status(stack, wid, "PROCESSING")
        await Ledger(stack.engine).release(row["hold_id"])  # an outside hand takes the hold away
    finally:
        stack.bank_state.settle_after = 0.2
    row = await _until_status(stack, wid, "NEEDS_ATTENTION", "COMPLETED", "FAILED")
    assert row["status"] == "NEEDS_ATTENTION" and "books could not be completed" in row["reason"], row
    assert len(await _alerts(stack, wid, "ops.alert.withdrawal_needs_attention")) == 1
    ops = await make_user(stack, roles=["ops"])
    async with stack.http() as c:
        paid = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/resolve",
            json={"paid": True, "reason": "bank statement shows it paid"},
            headers=ops.headers(totp=True),
        )
        assert paid.status_code == 200 and paid.json()["code"] == "resolved_paid", paid.text

        async def alerted_again() -> bool:
            return len(await _alerts(stack, wid, "ops.alert.withdrawal_needs_attention")) == 2

        await wait_for(alerted_again)
        assert (await _row(stack, wid) or {})["status"] == "NEEDS_ATTENTION"
        ended = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/resolve",
            json={"paid": False, "reason": "reversed with the bank; adjustment booked separately"},
            headers=ops.headers(totp=True),
        )
    assert ended.status_code == 200, ended.text
    await _until_status(stack, wid, "FAILED")
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid), result_type=WithdrawalState)
    assert (await handle.result()).status == "FAILED"


# --- issue 11 item 10: creation is atomic and idempotent -----------------------------------------------


async def test_a_withdrawal_refused_for_funds_leaves_no_record(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "100.00")
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "500.00"})
    assert r.status_code == 422 and r.json()["code"] == "insufficient_funds", r.text
    async with stack.http() as c:
        mine = await c.get("/api/v1/withdrawals", headers=customer.headers())
    assert mine.json() == {"withdrawals": [], "next_cursor": None}


async def test_the_same_idempotency_key_withdraws_once(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "300.00")
    key = str(uuid.uuid4())
    first = await _withdraw(
        stack, customer, {"currency": "GBP", "amount": "100.00"}, **{"Idempotency-Key": key}
    )
    again = await _withdraw(
        stack, customer, {"currency": "GBP", "amount": "100.00"}, **{"Idempotency-Key": key}
    )
    assert first.status_code == 201 and again.status_code == 201, (first.text, again.text)
    assert again.json()["id"] == first.json()["id"] and again.headers.get("Idempotent-Replayed") == "true"
    other = await _withdraw(
        stack, customer, {"currency": "GBP", "amount": "90.00"}, **{"Idempotency-Key": key}
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    await _until_status(stack, first.json()["id"], "COMPLETED")
    async with stack.http() as c:
        mine = (await c.get("/api/v1/withdrawals", headers=customer.headers())).json()
    assert [w["id"] for w in mine["withdrawals"]] == [first.json()["id"]]
    assert await balance(stack, customer.id, "GBP") == (Decimal("199.50"), Decimal(0))


async def test_a_request_whose_saga_did_not_start_is_not_recorded(stack: Stack) -> None:
    """The row and the saga's start are one unit: if starting fails, nothing is left behind."""
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "300.00")
    wid = uuid.uuid4()

    async def temporal_down(_: payments.AcceptedWithdrawal) -> None:
        raise ConnectionError("temporal unreachable")

    try:
        await payments.accept_withdrawal(
            stack.engine, withdrawal_id=wid, user_id=customer.id, currency="GBP", amount=Decimal("50.00"),
            price_gbp=None, address_id=None,
        bank_account_id=await withdrawal_account(stack, customer),
            policy=payments.WithdrawalPolicy(Decimal("10000"), Decimal("50000"), {"GBP": Decimal("0.50")}),
            crypto_provider="binance", on_recorded=temporal_down,
        )  # fmt: skip
    except ConnectionError:
        pass
    assert await _row(stack, str(wid)) is None


async def test_a_saga_without_its_row_or_for_a_finished_withdrawal_takes_no_hold(stack: Stack) -> None:
    """The reserve step locks and checks the withdrawal's row with the hold: a saga whose request never
    committed (the API died), or a stalled worker replaying a finished withdrawal, holds nothing."""
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "300.00")
    accepted = await payments.accept_withdrawal(
        stack.engine, withdrawal_id=(finished := uuid.uuid4()), user_id=customer.id, currency="GBP",
        amount=Decimal("50.00"), price_gbp=None, address_id=None,
        bank_account_id=await withdrawal_account(stack, customer),
        policy=payments.WithdrawalPolicy(Decimal("10000"), Decimal("50000"), {"GBP": Decimal("0.50")}),
        crypto_provider="binance",
    )  # fmt: skip
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE withdrawals SET status = 'CANCELLED' WHERE id = :id"), {"id": finished}
        )
    for wid in (finished, uuid.uuid4()):  # finished; never recorded
        data = WithdrawalInput(
            withdrawal_id=wid, user_id=customer.id, currency="GBP", amount=Decimal("50.00"), fee=accepted.fee,
            notional_gbp=Decimal("50.00"), destination=accepted.destination, provider="bank",
        )  # fmt: skip
        handle = await start_withdrawal(stack.client, data)
        try:
            result = await handle.result()
        except WorkflowFailureError as e:  # pragma: no cover - the saga must end, not fail
            raise AssertionError(e) from e
        assert result.status == "FAILED"
        async with stack.engine.connect() as conn:
            holds = (
                await conn.execute(text("SELECT count(*) FROM holds WHERE reference_id = :w"), {"w": wid})
            ).scalar_one()
        assert holds == 0
    assert await balance(stack, customer.id, "GBP") == (Decimal("300.00"), Decimal(0))
    assert not [p for p in stack.bank_state.payouts.values() if p.external_id == str(finished)]


# --- issue 11 item 13: amounts are strings -------------------------------------------------------------


async def test_an_amount_sent_as_a_json_number_is_refused(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "50.00")
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": 10.5})
    assert r.status_code == 422 and "amount" in r.text, r.text
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "1e1"})
    assert r.status_code == 422
    async with stack.http() as c:
        mine = (await c.get("/api/v1/withdrawals", headers=customer.headers())).json()
    assert mine == {"withdrawals": [], "next_cursor": None}


# --- issue 11 item 17: the approval threshold is on the rolling 24 h total -----------------------------


async def test_the_approval_threshold_applies_to_the_rolling_24h_total(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    ids = []
    for _ in range(3):
        r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "4000.00"})
        assert r.status_code == 201, r.text
        ids.append(r.json())
    assert [w["approvals_required"] for w in ids] == [0, 0, 1]  # £12,000 in 24 h is above £10,000
    await _until_status(stack, ids[2]["id"], "AWAITING_APPROVAL")
    for w in ids[:2]:
        await _until_status(stack, w["id"], "COMPLETED")
    async with stack.http() as c:
        r = await c.post(f"/api/v1/withdrawals/{ids[2]['id']}/cancel", headers=customer.headers())
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED", r.text


# --- issue 11 item 12: the venue's network fee is booked ------------------------------------------------


async def test_the_network_fee_is_booked_so_the_omnibus_reconciles(stack: Stack) -> None:
    """Binance takes 0.0001 BTC on top of the amount from our omnibus: `provider:binance` moves by exactly
    what the omnibus lost, the customer pays our 0.0002 fee and the house bears the network fee."""
    customer, address_id = await _btc_customer(stack, "0.01")
    venue = stack.binance_app[STATE_KEY].venue
    before = venue.free.get("BTC", Decimal(0))
    r = await _withdraw(stack, customer, {"currency": "BTC", "amount": "0.005", "address_id": address_id})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    await _until_status(stack, wid, "COMPLETED")
    omnibus_out = before - venue.free.get("BTC", Decimal(0))
    assert omnibus_out == Decimal("0.0051")
    async with stack.engine.connect() as conn:
        legs: dict[str, Decimal] = dict(
            (
                await conn.execute(
                    text(
                        "SELECT coalesce(a.code, 'customer'), sum(e.amount) FROM ledger_entries e "
                        "JOIN ledger_transactions t ON t.id = e.transaction_id "
                        "JOIN accounts a ON a.id = e.account_id "
                        "WHERE t.reference_id = :w AND t.reference_type = 'withdrawal' GROUP BY 1"
                    ),
                    {"w": wid},
                )
            ).all()
        )
    assert legs["provider:binance"] == omnibus_out
    assert legs["customer"] == Decimal("-0.0052")
    assert legs["fee_revenue"] == Decimal("0.0001")
    assert await balance(stack, customer.id, "BTC") == (Decimal("0.0048"), Decimal(0))


# --- issue 12 item 3: a decision carries proof ---------------------------------------------------------


async def test_a_bare_approver_id_is_refused_and_audited_and_staff_http_approvals_need_totp(
    stack: Stack,
) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    approver = await make_user(stack, roles=["approver"])
    r = await _withdraw(stack, customer, {"currency": "GBP", "amount": "12000.00"})
    wid = r.json()["id"]
    await _until_status(stack, wid, "AWAITING_APPROVAL")
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
    # `temporal workflow signal --name approve --input '{"approver_id": "<alice>"}'`
    await handle.signal("approve", Decision(approver_id=approver.id, reason="looks fine"))
    refused = await wait_for(lambda: _alerts(stack, wid, "withdrawal.approve.refused"))
    assert refused[0]["actor_id"] is None and refused[0]["details"]["refusal"] == "unproven"
    # A token for someone else, or for another withdrawal, proves nothing either.
    other = await make_user(stack, roles=["approver"])
    stolen = _token(stack, other.id, wid, "approve")
    outcome = await handle.execute_update(
        "approve_withdrawal", Decision(approver_id=approver.id, token=stolen), result_type=dict
    )
    assert outcome["accepted"] is False and outcome["code"] == "unproven"
    assert (await _row(stack, wid) or {})["status"] == "AWAITING_APPROVAL"
    async with stack.http() as c:
        no_totp = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/approve", json={"reason": "ok"}, headers=approver.headers()
        )
        assert no_totp.status_code == 403 and no_totp.json()["code"] == "totp_required"
        ok = await c.post(
            f"/api/v1/admin/withdrawals/{wid}/approve",
            json={"reason": "ok"},
            headers=approver.headers(totp=True),
        )
    assert ok.status_code == 200 and ok.json()["code"] == "approved", ok.text
    await _until_status(stack, wid, "COMPLETED")
    approvals = await _alerts(stack, wid, "withdrawal.approve")
    assert [a["actor_id"] for a in approvals] == [approver.id]


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_the_cli_signs_an_approval_token_after_a_totp_check_for_the_signal_path(
    stack: Stack, database_url: str
) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    approver = await make_user(stack, roles=["approver"])
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "11000.00"})).json()["id"]
    await _until_status(stack, wid, "AWAITING_APPROVAL")
    wrong = await asyncio.to_thread(
        _cli, database_url, "approval-token", approver.email, wid, "--action", "approve", "--totp", "000000"
    )
    assert wrong.returncode != 0 and "TOTP" in wrong.stderr
    # The code of the next time step (the drift window accepts one step ahead): still valid after the
    # seconds a CLI process takes to start on a loaded machine, where the previous step's may not be.
    ahead = approver.totp.at((int(time.time() // 30) + 1) * 30)
    made = await asyncio.to_thread(
        _cli, database_url, "approval-token", approver.email, wid, "--action", "approve", "--totp", ahead
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
    await handle.signal("approve", Decision(approver_id=approver.id, reason="by CLI", token=token))
    await _until_status(stack, wid, "COMPLETED")


async def test_a_customer_borne_network_fee_replaces_the_fee_and_the_rest_of_the_hold_is_released(
    stack: Stack,
) -> None:
    """Network fee payer "customer": the customer pays what the venue took (at most the fee held)."""
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "100.00")
    wid = uuid.uuid4()
    accepted = await payments.accept_withdrawal(
        stack.engine, withdrawal_id=wid, user_id=customer.id, currency="GBP", amount=Decimal("50.00"),
        price_gbp=None, address_id=None,
        bank_account_id=await withdrawal_account(stack, customer),
        policy=payments.WithdrawalPolicy(Decimal("10000"), Decimal("50000"), {"GBP": Decimal("0.50")}),
        crypto_provider="binance",
    )  # fmt: skip
    ledger = Ledger(stack.engine)
    account = await ledger.customer_account(customer.id, "GBP")
    hold = await ledger.reserve(
        account, "GBP", Decimal("50.50"), reference_type="withdrawal", reference_id=wid, step="reserve"
    )
    await payments.complete_withdrawal(
        stack.engine, ledger, withdrawal_id=wid, user_id=customer.id, currency="GBP", amount=Decimal("50.00"),
        fee=accepted.fee, hold_id=hold.hold_id, provider="bank", provider_ref="x", tx_hash=None,
        network_fee=Decimal("0.30"), network_fee_payer="customer",
    )  # fmt: skip
    assert await balance(stack, customer.id, "GBP") == (Decimal("49.70"), Decimal(0))
    row = await _row(stack, str(wid))
    assert row is not None and row["status"] == "COMPLETED" and row["fee"] == Decimal("0.30")


async def test_the_admin_api_signs_a_decision_token_after_totp_for_the_signal_path(stack: Stack) -> None:
    customer = await make_user(stack)
    await deposit_gbp(stack, customer, "13000.00")
    approver = await make_user(stack, roles=["approver"])
    wid = (await _withdraw(stack, customer, {"currency": "GBP", "amount": "11000.00"})).json()["id"]
    await _until_status(stack, wid, "AWAITING_APPROVAL")
    url = f"/api/v1/admin/withdrawals/{wid}/decision-token"
    async with stack.http() as c:
        refused = await c.post(url, json={"action": "reject"}, headers=approver.headers())
        assert refused.status_code == 403 and refused.json()["code"] == "totp_required"
        not_staff = await c.post(url, json={"action": "reject"}, headers=customer.headers(totp=True))
        assert not_staff.status_code == 403
        r = await c.post(url, json={"action": "reject"}, headers=approver.headers(totp=True))
    assert r.status_code == 200, r.text
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(wid))
    # The token is for "reject": it does not approve.
    wrong = await handle.execute_update(
        "approve_withdrawal", Decision(approver_id=approver.id, token=r.json()["token"]), result_type=dict
    )
    assert wrong["accepted"] is False and wrong["code"] == "unproven"
    await handle.signal(
        "reject", Decision(approver_id=approver.id, reason="source unclear", token=r.json()["token"])
    )
    await _until_status(stack, wid, "REJECTED")
    assert await balance(stack, customer.id, "GBP") == (Decimal("13000.00"), Decimal(0))

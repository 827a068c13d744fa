"""Where the rules run, end to end on the payments stack (API, Temporal workers, sandbox bank): a
withdrawal hit by block_and_review waits with its hold and goes on when compliance clears it, or is
refused with the hold released when compliance declines; a decline outcome refuses at once; a deposit
is credited whatever its alerts say; the customer never sees why."""

from __future__ import annotations

import gzip
import json
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from models.aml import ComplianceDecision
from services.decision_tokens import DecisionTokens
from tests.histories import HERE as HISTORIES
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

AML_WORDS = ("aml", "alert", "rule", "risk", "compliance", "suspicious", "country", "score", "case")


async def _high_risk_customer(stack: Stack) -> Customer:
    customer = await make_user(stack)
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO kyc_submissions (id, user_id, tier, status, details) "
                "VALUES (:id, :u, 1, 'APPROVED', CAST(:d AS jsonb))"
            ),
            {
                "id": uuid.uuid4(),
                "u": customer.id,
                "d": json.dumps({"nationality": "IR", "address": {"country": "GB", "city": "London"}}),
            },
        )
    return customer


async def _withdraw(stack: Stack, customer: Customer, amount: str) -> str:
    body = {
        "currency": "GBP",
        "amount": amount,
        "bank_account_id": str(await withdrawal_account(stack, customer)),
    }
    async with stack.http() as c:
        r = await c.post("/api/v1/withdrawals", json=body, headers=customer.headers(totp=True))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _customer_view(stack: Stack, customer: Customer, wid: str, *wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        async with stack.http() as c:
            r = await c.get(f"/api/v1/withdrawals/{wid}", headers=customer.headers())
            body: dict[str, Any] = r.json()
            return body if body["status"] in wanted else None

    found: dict[str, Any] = await wait_for(check)
    return found


def _silent(body: Any) -> None:
    """Nothing in what the customer sees says why (no tipping off)."""
    words = set("".join(ch if ch.isalpha() else " " for ch in json.dumps(body).lower()).split())
    assert not words & set(AML_WORDS), body


async def _decide(
    stack: Stack, wid: str, decision: str, token: str, staff_id: uuid.UUID | None = None
) -> None:
    handle = stack.client.get_workflow_handle(withdrawal_workflow_id(uuid.UUID(wid)))
    await handle.signal(
        "compliance_decision", ComplianceDecision(decision=decision, token=token, staff_id=staff_id)
    )


async def _audited(stack: Stack, wid: str, action: str, *, count: int = 1) -> bool:
    """Whether `action` was audited on the withdrawal (at least `count` times)."""
    async with stack.engine.connect() as conn:
        n = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE target_type = 'withdrawal' AND target_id = :w "
                    "AND action = :a"
                ),
                {"w": wid, "a": action},
            )
        ).scalar_one()
    return bool(n >= count)


async def _replays(stack: Stack, wid: str) -> None:
    """The finished saga's history replays on the current code; with RECORD_HISTORIES=1 it is also kept
    under tests/histories/withdrawals (the recorded paths every later change must still replay)."""
    history = await stack.client.get_workflow_handle(withdrawal_workflow_id(uuid.UUID(wid))).fetch_history()
    await Replayer(workflows=[WithdrawalWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        history
    )
    if os.environ.get("RECORD_HISTORIES") == "1":
        path = HISTORIES / "withdrawals" / f"{history.workflow_id}.json.gz"
        path.write_bytes(gzip.compress(history.to_json().encode()))


def _token(stack: Stack, staff_id: uuid.UUID, wid: str, action: str) -> str:
    return DecisionTokens.from_secret(stack.settings.jwt_secret).issue(
        actor_id=staff_id, withdrawal_id=uuid.UUID(wid), action=action, now=datetime.now(UTC)
    )


async def _alerts(stack: Stack, subject_type: str, subject_id: str) -> list[tuple[str, str, bool]]:
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT rule_code, outcome, case_id IS NOT NULL FROM aml_alerts "
                    "WHERE subject_type = :t AND subject_id = :s AND NOT shadow ORDER BY rule_code"
                ),
                {"t": subject_type, "s": subject_id},
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


async def _deposit_id(stack: Stack, customer: Customer) -> str:
    async with stack.engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT id FROM deposits WHERE user_id = :u ORDER BY created_at DESC LIMIT 1"),
                    {"u": customer.id},
                )
            ).scalar_one()
        )


async def test_a_deposit_is_credited_whatever_its_alerts_say(stack: Stack) -> None:
    customer = await _high_risk_customer(stack)
    await deposit_gbp(stack, customer, "300.00")  # waits until credited
    did = await _deposit_id(stack, customer)

    async def alerted() -> list[tuple[str, str, bool]]:
        return await _alerts(stack, "deposit", did)

    # The deposit's own evaluation reaches block_and_review: an alert in the customer's case, no block.
    assert await wait_for(alerted) == [("high_risk_country", "block_and_review", True)]
    assert await balance(stack, customer.id, "GBP") == (Decimal("300.00"), Decimal(0))


async def test_block_and_review_waits_with_its_hold_until_compliance_clears_it(stack: Stack) -> None:
    customer = await _high_risk_customer(stack)
    await deposit_gbp(stack, customer, "300.00")
    wid = await _withdraw(stack, customer, "100.00")

    held = await _customer_view(stack, customer, wid, "UNDER_REVIEW")
    assert held["reason"] == "under review"
    _silent(held)
    assert (await balance(stack, customer.id, "GBP"))[1] > 0  # the hold is kept
    assert [a[0] for a in await _alerts(stack, "withdrawal", wid)] == [
        "deposit_then_withdrawal",
        "high_risk_country",
    ]

    # A bare decision and one from a user without the compliance role count for nothing (audited).
    await _decide(stack, wid, "clear", "")
    approver = await make_user(stack, roles=["approver"])
    await _decide(stack, wid, "clear", _token(stack, approver.id, wid, "aml_clear"))
    assert await wait_for(lambda: _audited(stack, wid, "withdrawal.compliance_clear.refused", count=2))
    assert (await _customer_view(stack, customer, wid, "UNDER_REVIEW"))["status"] == "UNDER_REVIEW"

    officer = await make_user(stack, roles=["compliance"])
    await _decide(stack, wid, "clear", _token(stack, officer.id, wid, "aml_clear"))
    done = await _customer_view(stack, customer, wid, "COMPLETED")
    _silent(done)
    assert await balance(stack, customer.id, "GBP") == (Decimal("199.50"), Decimal(0))
    assert await _audited(stack, wid, "withdrawal.compliance_clear")
    await _replays(stack, wid)


async def test_compliance_decline_releases_the_hold_and_refuses(stack: Stack) -> None:
    customer = await _high_risk_customer(stack)
    await deposit_gbp(stack, customer, "300.00")
    wid = await _withdraw(stack, customer, "100.00")
    await _customer_view(stack, customer, wid, "UNDER_REVIEW")

    officer = await make_user(stack, roles=["compliance"])
    # A token for clearing cannot decline (and the reverse): the action is bound into it.
    await _decide(stack, wid, "decline", _token(stack, officer.id, wid, "aml_clear"))
    await wait_for(lambda: _audited(stack, wid, "withdrawal.compliance_decline.refused"))
    await _decide(stack, wid, "decline", _token(stack, officer.id, wid, "aml_decline"))

    refused = await _customer_view(stack, customer, wid, "FAILED")
    assert refused["reason"] == "withdrawal refused"
    _silent(refused)
    assert await balance(stack, customer.id, "GBP") == (Decimal("300.00"), Decimal(0))
    assert not [p for p in stack.bank_state.payouts.values() if p.external_id == wid]
    await _replays(stack, wid)


async def test_a_decline_outcome_refuses_at_once_and_releases_the_hold(stack: Stack) -> None:
    # High-risk nationality (90) + deposit then withdrawal within 2 h (30) + over £10,000 in 24 h (30)
    # + a single transaction of £5,000 or more (25) = 175: decline.
    customer = await _high_risk_customer(stack)
    await deposit_gbp(stack, customer, "6000.00")
    wid = await _withdraw(stack, customer, "5000.00")
    refused = await _customer_view(stack, customer, wid, "FAILED")
    assert refused["reason"] == "withdrawal refused"
    _silent(refused)
    assert await balance(stack, customer.id, "GBP") == (Decimal("6000.00"), Decimal(0))
    assert {a[1] for a in await _alerts(stack, "withdrawal", wid)} == {"decline"}
    await _replays(stack, wid)

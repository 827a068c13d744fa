"""The SAR workflow on the payments stack: compliance's clear lets a withdrawal held for review continue;
a SAR with a DAML request keeps it held until consent; decisions need proof; the customer never learns
why."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from models.aml_cases_api import SarDecision
from services.decision_tokens import DecisionTokens
from tests.aml.conftest import mails_to, open_case, staff, tipping_off
from tests.payments.conftest import (
    Customer,
    Stack,
    balance,
    deposit_gbp,
    make_user,
    wait_for,
    withdrawal_account,
)
from workflows.sar import SarWorkflow, sar_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _held_withdrawal(stack: Stack) -> tuple[Customer, str, uuid.UUID]:
    """A customer from a high-risk country (the seed rules hold their withdrawal for compliance): the
    withdrawal waiting in UNDER_REVIEW, and the case its alert opened."""
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
    await deposit_gbp(stack, customer, "500.00")
    body = {
        "currency": "GBP",
        "amount": "100.00",
        "bank_account_id": str(await withdrawal_account(stack, customer)),
    }
    async with stack.http() as c:
        r = await c.post("/api/v1/withdrawals", json=body, headers=customer.headers(totp=True))
    assert r.status_code == 201, r.text
    wid = str(r.json()["id"])
    await _status(stack, customer, wid, "UNDER_REVIEW")
    async with stack.engine.connect() as conn:
        case_id = (
            await conn.execute(
                text(
                    "SELECT case_id FROM aml_alerts WHERE subject_type = 'withdrawal' AND subject_id = :w "
                    "AND case_id IS NOT NULL LIMIT 1"
                ),
                {"w": wid},
            )
        ).scalar_one()
    return customer, wid, case_id


async def _status(
    stack: Stack, customer: Customer, wid: str, *wanted: str, timeout: float = 30
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        async with stack.http() as c:
            r = await c.get(f"/api/v1/withdrawals/{wid}", headers=customer.headers())
        body: dict[str, Any] = r.json()
        return body if body["status"] in wanted else None

    found: dict[str, Any] = await wait_for(check, timeout=timeout)
    return found


async def test_clearing_the_case_lets_the_held_withdrawal_continue_and_closes_the_case(stack: Stack) -> None:
    customer, wid, case_id = await _held_withdrawal(stack)
    fee = stack.settings.withdrawal_fees.get("GBP", Decimal(0))
    assert await balance(stack, customer.id, "GBP") == (Decimal("500.00"), Decimal("100.00") + fee)
    alice = await staff(stack)
    async with stack.http() as c:
        # Closing the case outright would leave its withdrawal held with nobody to decide it.
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/close",
            json={"outcome": "false_positive", "note": "looks fine"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 409 and r.json()["code"] == "case_refused", r.text
        assert "held for review" in r.json()["detail"]
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/clear",
            json={"reason": "nationality on file is wrong; passport shows GB"},
            headers=customer.headers(totp=True),
        )
        assert r.status_code == 403, r.text  # a customer is not compliance
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/clear",
            json={"reason": "nationality on file is wrong; passport shows GB"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": True, "code": "clear", "detail": "", "stage": "closed"}

    done = await _status(stack, customer, wid, "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED", done
    assert await balance(stack, customer.id, "GBP") == (Decimal("400.00") - fee, Decimal(0))
    assert tipping_off(json.dumps(done)) == [], done
    for mail in await mails_to(stack, customer.email):
        assert tipping_off(f"{mail.get('subject')} {mail.get('text')} {mail.get('html')}") == [], mail

    ops = await staff(stack)
    async with stack.http() as c:
        r = await c.get(f"/api/v1/admin/aml/cases/{case_id}", headers=ops.headers())
    assert r.status_code == 200, r.text
    case = r.json()
    assert (case["status"], case["outcome"]) == ("closed", "false_positive")
    assert case["notes"][-1]["author_id"] == str(alice.id)
    assert {"kind": "withdrawal", "transaction_id": wid, "source": "alert"} in case["transactions"]
    async with stack.engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE target_id = :w "
                    "AND action = 'withdrawal.compliance_clear' AND actor_id = :a"
                ),
                {"w": wid, "a": alice.id},
            )
        ).scalar_one()
    assert audited == 1  # the withdrawal saga verified the officer's proof itself


async def test_a_daml_request_keeps_the_withdrawal_held_until_consent_and_unproven_decisions_do_not_count(
    stack: Stack,
) -> None:
    customer, wid, case_id = await _held_withdrawal(stack)
    alice, mallory = await staff(stack), await make_user(stack)
    attachment = {
        "name": "statement.pdf",
        "media_type": "application/pdf",
        "size_bytes": 1234,
        "sha256": "a" * 64,
    }
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/sar",
            json={"nca_reference": "NCA-2026-000123", "narrative": "funds passed straight through",
                  "attachments": [attachment], "daml_withdrawal_id": wid},
            headers=alice.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "awaiting_consent"

    handle = stack.client.get_workflow_handle(sar_workflow_id(case_id))
    state = await handle.query("state")
    assert state["daml_state"] == "awaiting_consent" and state["ends_at"] is not None
    # Someone without the compliance role, with a token of their own: refused and audited, nothing moves.
    forged = DecisionTokens.from_secret(stack.settings.jwt_secret).issue(
        actor_id=mallory.id, action="aml_case_nca_consented", now=datetime.now(UTC), case_id=case_id
    )
    await handle.signal(
        "decision", SarDecision(kind="nca_consented", staff_id=mallory.id, token=forged, reason="let it go")
    )

    async def refused() -> int:
        async with stack.engine.connect() as conn:
            n = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM audit_log WHERE action = 'aml.case.nca_consented.refused' "
                        "AND target_id = :c"
                    ),
                    {"c": str(case_id)},
                )
            ).scalar_one()
        return int(n)

    await wait_for(refused)
    assert (await handle.query("state"))["daml_state"] == "awaiting_consent"
    assert (await _status(stack, customer, wid, "UNDER_REVIEW"))["reason"] == "under review"

    async with stack.engine.connect() as conn:
        sar = (
            await conn.execute(
                text(
                    "SELECT nca_reference, attachments, daml_state, notice_ends_at FROM aml_sar_reports "
                    "WHERE case_id = :c"
                ),
                {"c": case_id},
            )
        ).one()
    assert sar.nca_reference == "NCA-2026-000123" and sar.attachments == [attachment]
    assert sar.daml_state == "awaiting_consent" and sar.notice_ends_at > datetime.now(UTC)

    bob = await staff(stack)
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/nca-consented",
            json={"reason": "NCA consent letter received"},
            headers=bob.headers(totp=True),
        )
        assert r.status_code == 200, r.text
    done = await _status(stack, customer, wid, "COMPLETED", "FAILED", timeout=60)
    assert done["status"] == "COMPLETED", done
    async with stack.engine.connect() as conn:
        state_now = (
            await conn.execute(
                text("SELECT daml_state FROM aml_sar_reports WHERE case_id = :c"), {"c": case_id}
            )
        ).scalar_one()
    assert state_now == "consented"


async def test_declining_the_case_refuses_the_held_withdrawal_and_releases_its_hold(stack: Stack) -> None:
    customer, wid, case_id = await _held_withdrawal(stack)
    alice = await staff(stack)
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/decline",
            json={"reason": "source of funds not explained"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "closed"
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/clear",
            json={"reason": "too late"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 409 and r.json()["code"] == "case_decided", r.text  # decisions are complete
    done = await _status(stack, customer, wid, "FAILED", "COMPLETED", timeout=60)
    assert done["status"] == "FAILED", done
    assert tipping_off(json.dumps(done)) == [], done
    assert await balance(stack, customer.id, "GBP") == (
        Decimal("500.00"),
        Decimal(0),
    )  # nothing held, nothing out


async def test_declining_during_a_daml_request_refuses_the_withdrawal_and_the_report_says_declined(
    stack: Stack,
) -> None:
    customer, wid, case_id = await _held_withdrawal(stack)
    alice = await staff(stack)
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/sar",
            json={"nca_reference": "NCA-2026-000777", "narrative": "funds passed straight through",
                  "attachments": [], "daml_withdrawal_id": wid},
            headers=alice.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 200 and r.json()["stage"] == "awaiting_consent", r.text
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/decline",
            json={"reason": "the customer could not explain the source of funds"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 200 and r.json()["stage"] == "closed", r.text
    done = await _status(stack, customer, wid, "FAILED", "COMPLETED", timeout=60)
    assert done["status"] == "FAILED", done
    assert tipping_off(json.dumps(done)) == [], done
    assert await balance(stack, customer.id, "GBP") == (Decimal("500.00"), Decimal(0))
    async with stack.engine.connect() as conn:
        daml_state = (
            await conn.execute(
                text("SELECT daml_state FROM aml_sar_reports WHERE case_id = :c"), {"c": case_id}
            )
        ).scalar_one()
        audited = (
            await conn.execute(
                text("SELECT actor_id FROM audit_log WHERE action = 'aml.daml.declined' AND target_id = :c"),
                {"c": str(case_id)},
            )
        ).all()
    assert daml_state == "declined"  # not "awaiting_consent": no consent is awaited for a refused payment
    assert [row[0] for row in audited] == [alice.id]
    handle = stack.client.get_workflow_handle(sar_workflow_id(case_id))
    assert (await handle.query("state"))["daml_state"] == "declined"


async def test_closing_a_reported_case_ends_its_sar_saga_and_a_nudge_alone_does_not(stack: Stack) -> None:
    """After a SAR without a DAML request the saga waits in `reported` (held money would still need a
    word). Closing the case with its outcome ends it; a `case_closed` signal on an open case (anyone can
    send one from the Temporal CLI) is checked against the database and changes nothing."""
    customer = await make_user(stack)
    case_id = await open_case(stack, customer.id)
    alice, bob = await staff(stack), await staff(stack)
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/sar",
            json={"nca_reference": "NCA-2026-000777", "narrative": "structured deposits"},
            headers=alice.headers(totp=True),
        )
        assert r.status_code == 200 and r.json()["stage"] == "reported", r.text
    handle = stack.client.get_workflow_handle(sar_workflow_id(case_id))
    await handle.signal("case_closed")  # the case is still open: nothing ends

    async def stage() -> str:
        return str((await handle.query("state"))["stage"])

    await wait_for(lambda: _checked_nudge(handle))
    assert await stage() == "reported"

    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/close",
            json={"outcome": "confirmed_risk", "note": "reported to the NCA; relationship reviewed"},
            headers=bob.headers(totp=True),
        )
    assert r.status_code == 200 and r.json()["status"] == "closed", r.text
    final = await asyncio.wait_for(handle.result(), timeout=60)
    assert final["stage"] == "closed"
    # The signal path is deterministic: the finished history replays on the current code.
    await Replayer(workflows=[SarWorkflow], data_converter=pydantic_data_converter).replay_workflow(
        await handle.fetch_history()
    )


async def _checked_nudge(handle: Any) -> bool:
    """Whether the saga has asked the database about a `case_closed` nudge (that activity completed)."""
    events = (await handle.fetch_history()).events
    asked = {
        e.event_id
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "aml.sar.case_is_closed"
    }
    return any(
        e.HasField("activity_task_completed_event_attributes")
        and e.activity_task_completed_event_attributes.scheduled_event_id in asked
        for e in events
    )

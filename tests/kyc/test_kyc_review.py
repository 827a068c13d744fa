"""Compliance reviews in the KYC saga: tier 3 always, and a tier 1 whose screening found a possible match.

A review counts only as an Update from an active compliance user other than the customer, carrying a token
signed after that user's TOTP check; the validator refuses bare and self reviews before anything is
recorded, the activity refuses forged or misdirected tokens and audits them."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowUpdateFailedError

from models.kyc import KycState, ReviewDecision, ReviewOutcome
from models.screening import ListedEntity, ListedName, ListSource, PartialDate, Topic
from services.decision_tokens import DecisionTokens
from services.screening.store import load_list
from tests.kyc.conftest import (
    TIER1,
    Person,
    Stack,
    mails_once,
    make_user,
    submission,
    submit_tier2,
    tier,
    upload_passport,
    wait_status,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

QUESTIONNAIRE = {
    "source_of_funds": "employment",
    "occupation": "Structural engineer",
    "employer": "Bridges Ltd",
    "annual_income_gbp": "85000.00",
    "expected_annual_deposits_gbp": "30000.00",
    "explanation": "Monthly savings from my salary, paid into my Barclays account.",
}


async def _tier3(stack: Stack, person: Person) -> str:
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/kyc/tier3",
            data={"questionnaire": json.dumps(QUESTIONNAIRE)},
            files=[("evidence", ("payslip.pdf", b"%PDF-1.7 payslip", "application/pdf"))],
            headers=person.headers(),
        )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def test_tier3_waits_for_compliance_and_only_a_proven_compliance_decision_counts(stack: Stack) -> None:
    ivy = await make_user(stack, tier=2)
    officer = await make_user(stack, roles=["compliance"])
    approver = await make_user(stack, roles=["approver"])
    sid = await _tier3(stack, ivy)
    await wait_status(stack, sid, "IN_REVIEW")
    handle = stack.client.get_workflow_handle(f"kyc-{sid}")

    # The customer is no reviewer: not through the admin API, and not as an Update with their own token.
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/kyc/{sid}/approve", json={"reason": "me"}, headers=ivy.headers(totp=True)
        )
    assert r.status_code == 403
    tokens = DecisionTokens.from_secret(stack.settings.jwt_secret)
    own = tokens.issue(
        actor_id=ivy.id, kyc_submission_id=uuid.UUID(sid), action="kyc_approve", now=datetime.now(UTC)
    )
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            "review", ReviewDecision(reviewer_id=ivy.id, approve=True, reason="x", token=own)
        )
    # A bare id is no proof: refused by the validator.
    with pytest.raises(WorkflowUpdateFailedError):
        await handle.execute_update(
            "review", ReviewDecision(reviewer_id=officer.id, approve=True, reason="x")
        )
    # A token for another submission, and a real token of a user without the compliance role, are refused.
    other = tokens.issue(
        actor_id=officer.id, kyc_submission_id=uuid.uuid4(), action="kyc_approve", now=datetime.now(UTC)
    )
    forged = await handle.execute_update(
        "review",
        ReviewDecision(reviewer_id=officer.id, approve=True, reason="x", token=other),
        result_type=ReviewOutcome,
    )
    assert (forged.accepted, forged.code) == (False, "unproven")
    wrong_role = tokens.issue(
        actor_id=approver.id, kyc_submission_id=uuid.UUID(sid), action="kyc_approve", now=datetime.now(UTC)
    )
    refused = await handle.execute_update(
        "review",
        ReviewDecision(reviewer_id=approver.id, approve=True, reason="x", token=wrong_role),
        result_type=ReviewOutcome,
    )
    assert (refused.accepted, refused.code) == (False, "not_a_reviewer")
    assert (await submission(stack, sid)).status == "IN_REVIEW"
    assert await tier(stack, ivy.id) == 2

    # Compliance, with TOTP, through the admin API.
    async with stack.http() as c:
        queue = await c.get("/api/v1/admin/kyc/reviews", headers=officer.headers())
        assert queue.status_code == 200
        item = next(i for i in queue.json() if i["id"] == sid)
        assert item["evidence"][0]["filename"] == "payslip.pdf"
        assert item["details"]["source_of_funds"] == "employment"
        no_totp = await c.post(
            f"/api/v1/admin/kyc/{sid}/approve", json={"reason": "payslips match"}, headers=officer.headers()
        )
        assert (no_totp.status_code, no_totp.json()["code"]) == (403, "totp_required")
        r = await c.post(
            f"/api/v1/admin/kyc/{sid}/approve",
            json={"reason": "payslips match"},
            headers=officer.headers(totp=True),
        )
    assert r.status_code == 200, r.text
    row = await wait_status(stack, sid, "APPROVED")
    assert row.reviewed_by == officer.id
    assert await tier(stack, ivy.id) == 3
    async with stack.engine.connect() as conn:
        actions = (
            await conn.execute(
                text("SELECT action, actor_id FROM audit_log WHERE target_id = :t ORDER BY created_at"),
                {"t": sid},
            )
        ).all()
    assert ("kyc.approved", officer.id) in [(a, i) for a, i in actions]
    assert [a for a, _ in actions].count("kyc.review.kyc_approve.refused") == 2


async def _list_a_pep(stack: Stack) -> None:
    """One PEP listed as "Octavia Brightwater", born 1950 (our test customers are born 1990: a contradicting
    date of birth keeps an exact name in the review band, below the freeze band)."""
    listed = ListedEntity(
        source=ListSource.PEP,
        source_id="KYC-TEST-1",
        entity_type="individual",
        topic=Topic.PEP,
        names=[ListedName(name="Octavia Brightwater")],
        dates_of_birth=[PartialDate(year=1950)],
    )
    await load_list(stack.engine, ListSource.PEP, [listed])


async def test_a_possible_screening_match_goes_to_compliance_and_the_customer_is_not_told_why(
    stack: Stack,
) -> None:
    await _list_a_pep(stack)
    jay = await make_user(stack)
    officer = await make_user(stack, roles=["compliance"])
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/kyc/tier1",
            json={**TIER1, "first_name": "Octavia", "last_name": "Brightwater"},
            headers=jay.headers(),
        )
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    await wait_status(stack, sid, "IN_REVIEW")
    async with stack.http() as c:
        mine = (await c.get("/api/v1/kyc", headers=jay.headers())).json()
        queue = (await c.get("/api/v1/admin/kyc/reviews", headers=officer.headers())).json()
    assert mine["status"] == "IN_REVIEW" and mine["tier"] == 0
    shown = json.dumps(mine) + json.dumps(await mails_once(stack, jay.email, "in review"))
    for word in ("PEP", "sanction", "screening", "match", "Brightwater"):
        assert word.lower() not in shown.lower().replace("octavia brightwater", ""), word
    item = next(i for i in queue if i["id"] == sid)
    assert item["screening"][0]["check_type"] == "PEP" and item["screening"][0]["result"] == "HIT"
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/kyc/{sid}/reject",
            json={"reason": "PEP, no EDD consent"},
            headers=officer.headers(totp=True),
        )
    assert r.status_code == 200, r.text
    await wait_status(stack, sid, "REJECTED")
    assert await tier(stack, jay.id) == 0
    assert "PEP" not in json.dumps(await mails_once(stack, jay.email, "rejected"))


async def test_green_from_the_vendor_with_a_possible_match_still_goes_to_compliance(stack: Stack) -> None:
    await _list_a_pep(stack)
    kit = await make_user(stack, tier=1)
    officer = await make_user(stack, roles=["compliance"])
    async with stack.engine.begin() as conn:  # the tier-1 details this customer was approved with
        await conn.execute(
            text(
                "INSERT INTO kyc_submissions (id, user_id, tier, status, details) "
                "VALUES (gen_random_uuid(), :u, 1, 'APPROVED', CAST(:d AS jsonb))"
            ),
            {"u": kit.id, "d": json.dumps({**TIER1, "first_name": "Octavia", "last_name": "Brightwater"})},
        )
    await upload_passport(stack, kit)
    sid = (await submit_tier2(stack, kit))["id"]
    row = await wait_status(stack, sid, "IN_REVIEW")
    assert row.vendor_result is None  # GREEN is not stored as a reason; the vendor said yes
    state = await stack.client.get_workflow_handle(f"kyc-{sid}").query("state", result_type=KycState)
    assert state.possible_match and state.vendor is not None and state.vendor.answer == "GREEN"
    assert await tier(stack, kit.id) == 1
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/kyc/{sid}/approve",
            json={"reason": "not the listed person: born 1990"},
            headers=officer.headers(totp=True),
        )
    assert r.status_code == 200, r.text
    await wait_status(stack, sid, "APPROVED")
    assert await tier(stack, kit.id) == 2


async def test_a_tier3_questionnaire_with_money_as_a_json_number_is_a_422_and_writes_nothing(
    stack: Stack,
) -> None:
    ned = await make_user(stack, tier=2)
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/kyc/tier3",
            data={"questionnaire": json.dumps({**QUESTIONNAIRE, "annual_income_gbp": 85000.1})},
            files=[("evidence", ("payslip.pdf", b"%PDF-1.7 payslip", "application/pdf"))],
            headers=ned.headers(),
        )
        wrong_type = await c.post(
            "/api/v1/kyc/tier3",
            data={"questionnaire": json.dumps(QUESTIONNAIRE)},
            files=[("evidence", ("payslip.exe", b"MZ", "application/x-msdownload"))],
            headers=ned.headers(),
        )
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "questionnaire.annual_income_gbp"
    assert wrong_type.status_code == 422 and wrong_type.json()["errors"][0]["field"] == "evidence"
    async with stack.engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM kyc_submissions WHERE user_id = :u"), {"u": ned.id})
        ).scalar_one()
    assert count == 0

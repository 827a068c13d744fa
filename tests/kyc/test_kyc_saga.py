"""The KYC saga end to end: the customer API, the sandbox vendor (Sumsub's protocol), its signed webhooks,
the worker, PostgreSQL and the mail sink; every vendor outcome and webhook fault."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid

import pytest
from sqlalchemy import text

from services import first_trade_gates
from temporal import search_attributes as sa
from tests.kyc.conftest import (
    PASSPORT,
    TIER1,
    Stack,
    mails_once,
    make_user,
    submission,
    submit_tier2,
    tier,
    upload_passport,
    wait_for,
    wait_status,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _audit_actions(stack: Stack, submission_id: object) -> list[str]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action FROM audit_log WHERE target_type = 'kyc_submission' AND target_id = :t "
                "ORDER BY created_at"
            ),
            {"t": str(submission_id)},
        )
        return [r[0] for r in rows]


async def test_tier1_with_no_screening_match_is_granted_recorded_audited_and_mailed(stack: Stack) -> None:
    ada = await make_user(stack)
    async with stack.http() as c:
        r = await c.post("/api/v1/kyc/tier1", json=TIER1, headers=ada.headers())
    assert r.status_code == 202, r.text
    sid = r.json()["id"]
    row = await wait_status(stack, sid, "APPROVED")
    assert row.details["phone"] == "+442079460018"
    assert row.details["address"]["country"] == "GB"
    assert await tier(stack, ada.id) == 1
    described = await stack.client.get_workflow_handle(f"kyc-{sid}").describe()
    attributes = described.typed_search_attributes
    assert attributes.get(sa.KYC_STATUS) == "APPROVED" and attributes.get(sa.KYC_TIER) == 1
    assert attributes.get(sa.CUSTOMER_ID) == str(ada.id)
    assert await _audit_actions(stack, sid) == ["kyc.submitted", "kyc.approved"]
    async with stack.engine.connect() as conn:
        checks = (
            await conn.execute(
                text("SELECT check_type, result FROM aml_checks WHERE user_id = :u"), {"u": ada.id}
            )
        ).all()
    assert sorted(checks) == [("PEP", "CLEAR"), ("SANCTIONS", "CLEAR")]

    async def approval_mailed() -> bool:  # the mail follows the recorded state
        return any("approved" in m["subject"] for m in await stack.mail_to(ada.email))

    await wait_for(approval_mailed)
    async with stack.http() as c:
        overview = (await c.get("/api/v1/kyc", headers=ada.headers())).json()
    assert overview["tier"] == 1 and overview["status"] == "APPROVED"
    assert overview["limits"]["trading"] == {"limit": "1000", "used": "0", "remaining": "1000"}
    assert overview["next_tier"]["tier"] == 2
    assert [g["gate"] for g in overview["gates"] if g["state"] == "needed"] == [
        "risk_warning", "cooling_off", "categorisation", "appropriateness"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "patch"),
    [
        ("address.country", {"address": {**TIER1["address"], "country": "XX"}}),  # type: ignore[dict-item]
        ("phone", {"phone": "12345"}),
        ("date_of_birth", {"date_of_birth": "2020-01-01"}),
    ],
)
async def test_bad_tier1_input_is_a_422_naming_the_field_and_writes_nothing(
    stack: Stack, field: str, patch: dict[str, object]
) -> None:
    bob = await make_user(stack)
    async with stack.http() as c:
        r = await c.post("/api/v1/kyc/tier1", json={**TIER1, **patch}, headers=bob.headers())
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [f"body.{field}"]
    async with stack.engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM kyc_submissions WHERE user_id = :u"), {"u": bob.id})
        ).scalar_one()
    assert count == 0


async def test_tier2_green_from_the_vendor_grants_the_tier(stack: Stack) -> None:
    cat = await make_user(stack, tier=1)
    doc = await upload_passport(stack, cat)
    assert doc["country"] == "GBR"
    async with stack.http() as c:  # a double click: one saga, never a 5xx
        first, second = await asyncio.gather(
            *(c.post("/api/v1/kyc/tier2/submit", headers=cat.headers()) for _ in range(2))
        )
    assert {first.status_code, second.status_code} <= {202, 409}, (first.text, second.text)
    sid = (first if first.status_code == 202 else second).json()["id"]
    row = await wait_status(stack, sid, "APPROVED")
    assert row.vendor_result is None or row.vendor_result.get("answer") in (None, "GREEN")
    assert await tier(stack, cat.id) == 2
    applicant = stack.vendor.applicants[row.provider_applicant_id]
    assert applicant.external_user_id == str(cat.id) and len(applicant.id_docs) == 1


async def test_red_retry_asks_for_resubmission_then_green_grants(stack: Stack) -> None:
    dan = await make_user(stack, tier=1)
    await stack.control(
        "POST",
        "/_control/outcomes",
        json={
            "externalUserId": str(dan.id),
            "outcomes": [
                {
                    "reviewAnswer": "RED",
                    "reviewRejectType": "RETRY",
                    "rejectLabels": ["BAD_PROOF_OF_IDENTITY"],
                    "moderationComment": "The photo of your passport is blurred.",
                },
                {"reviewAnswer": "GREEN"},
            ],
        },
    )
    await upload_passport(stack, dan)
    sid = (await submit_tier2(stack, dan))["id"]
    row = await wait_status(stack, sid, "RESUBMIT_REQUESTED")
    assert row.vendor_result["reject_labels"] == ["BAD_PROOF_OF_IDENTITY"]

    async def asked_to_resubmit() -> bool:  # with the vendor's words for the applicant
        mails = await stack.mail_to(dan.email)
        return any("blurred" in m["text"] for m in mails if "resubmit" in m["subject"])

    await wait_for(asked_to_resubmit)
    await upload_passport(stack, dan)
    again = await submit_tier2(stack, dan)
    assert again["id"] == sid
    await wait_status(stack, sid, "APPROVED")
    assert await tier(stack, dan.id) == 2


async def test_red_final_rejects_and_keeps_the_tier(stack: Stack) -> None:
    eve = await make_user(stack, tier=1)
    await stack.control(
        "POST",
        "/_control/outcomes",
        json={
            "externalUserId": str(eve.id),
            "outcomes": [
                {
                    "reviewAnswer": "RED",
                    "reviewRejectType": "FINAL",
                    "rejectLabels": ["FORGERY"],
                    "moderationComment": "",
                    "clientComment": "document tampered",
                }
            ],
        },
    )
    await upload_passport(stack, eve)
    sid = (await submit_tier2(stack, eve))["id"]
    row = await wait_status(stack, sid, "REJECTED")
    assert row.rejection_reason == "vendor: RED/FINAL"
    assert await tier(stack, eve.id) == 1
    for m in await mails_once(stack, eve.email, "rejected"):
        assert "tampered" not in json.dumps(m) and "FORGERY" not in json.dumps(m)


async def test_lost_webhooks_are_made_up_for_by_polling_the_vendor(stack: Stack) -> None:
    fay = await make_user(stack, tier=1)
    await stack.control("POST", "/_control/faults", json={"kind": "webhook_drop", "count": 2})
    await upload_passport(stack, fay)
    sid = (await submit_tier2(stack, fay))["id"]
    await wait_status(stack, sid, "APPROVED")
    deliveries = [
        d
        for d in stack.vendor.deliveries.values()
        if stack.vendor.applicants[d.applicant_id].external_user_id == str(fay.id)
    ]
    assert deliveries and not any(d.delivered for d in deliveries)  # it learnt GREEN by asking


async def test_duplicated_and_reordered_webhooks_decide_once(stack: Stack) -> None:
    gus = await make_user(stack, tier=1)
    await stack.control("POST", "/_control/faults", json={"kind": "webhook_reorder"})
    await stack.control("POST", "/_control/faults", json={"kind": "webhook_duplicate", "count": 5})
    await stack.control("POST", "/_control/faults", json={"kind": "webhook_delay", "delay_ms": 300})
    await upload_passport(stack, gus)
    sid = (await submit_tier2(stack, gus))["id"]
    await wait_status(stack, sid, "APPROVED")
    assert (await _audit_actions(stack, sid)).count("kyc.approved") == 1
    async with stack.engine.connect() as conn:
        kinds = (
            (
                await conn.execute(
                    text("SELECT type FROM kyc_vendor_events WHERE submission_id = :s ORDER BY created_at"),
                    {"s": sid},
                )
            )
            .scalars()
            .all()
        )
    assert set(kinds) <= {"applicantPending", "applicantReviewed"} and "applicantReviewed" in kinds


async def test_a_forged_digest_is_401_and_changes_nothing(stack: Stack) -> None:
    hal = await make_user(stack, tier=1)
    await stack.control("POST", "/_control/faults", json={"kind": "webhook_drop", "count": 1})
    stack.vendor.review_after = 3600  # the vendor will not decide during this test
    await upload_passport(stack, hal)
    sid = (await submit_tier2(stack, hal))["id"]
    row = await wait_status(stack, sid, "VENDOR_CHECK")
    body = json.dumps(
        {
            "applicantId": row.provider_applicant_id,
            "type": "applicantReviewed",
            "reviewStatus": "completed",
            "reviewResult": {"reviewAnswer": "GREEN"},
        }
    ).encode()
    forged = hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/webhooks/kyc",
            content=body,
            headers={"X-Payload-Digest": forged, "Content-Type": "application/json"},
        )
        missing = await c.post(
            "/api/v1/webhooks/kyc", content=body, headers={"Content-Type": "application/json"}
        )
    assert r.status_code == 401 and missing.status_code == 401
    async with stack.engine.connect() as conn:
        events = (
            await conn.execute(
                text("SELECT count(*) FROM kyc_vendor_events WHERE applicant_id = :a"),
                {"a": row.provider_applicant_id},
            )
        ).scalar_one()
    assert events == 0
    assert (await submission(stack, sid)).status == "VENDOR_CHECK"
    assert await tier(stack, hal.id) == 1
    # A correctly signed event is only a hint: the vendor still says "pending", so nothing is granted.
    good = hmac.new(stack.settings.kyc_webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    async with stack.http() as c:
        r = await c.post("/api/v1/webhooks/kyc", content=body, headers={"X-Payload-Digest": good})
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert (await submission(stack, sid)).status == "VENDOR_CHECK"
    await stack.client.get_workflow_handle(f"kyc-{sid}").terminate("test over")


async def test_the_digest_is_checked_on_the_raw_body_not_a_re_serialised_one(stack: Stack) -> None:
    # Key order, spacing and escapes that json.dumps(json.loads(body)) would change: still verifies.
    body = (
        '{ "type" : "applicantPending",\n  "applicantId":"nobody-'
        + uuid.uuid4().hex
        + '", "externalUserId": "caf\\u00e9",  "reviewStatus":"pending" }'
    ).encode()
    assert json.dumps(json.loads(body)).encode() != body
    digest = hmac.new(stack.settings.kyc_webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    async with stack.http() as c:
        first = await c.post("/api/v1/webhooks/kyc", content=body, headers={"X-Payload-Digest": digest})
        again = await c.post("/api/v1/webhooks/kyc", content=body, headers={"X-Payload-Digest": digest})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "ignored"  # no open submission for that applicant
    assert again.status_code == 200


async def test_get_kyc_shows_the_first_trade_gates_and_their_progress(stack: Stack) -> None:
    """`GET /kyc` shows the FCA first-trade gates (`services.first_trade_gates`): each needed until passed,
    and the risk warning done once acknowledged (the cooling-off it starts then waits)."""
    ivo = await make_user(stack)
    async with stack.http() as c:
        before = (await c.get("/api/v1/kyc", headers=ivo.headers())).json()["gates"]
        await first_trade_gates.acknowledge_risk_warning(
            stack.engine, ivo.id, first_trade_gates.RISK_WARNING_VERSION, cooling_off_seconds=86400
        )
        after = (await c.get("/api/v1/kyc", headers=ivo.headers())).json()["gates"]
    assert {g["gate"]: g["state"] for g in before} == {
        "risk_warning": "needed",
        "cooling_off": "needed",
        "categorisation": "needed",
        "appropriateness": "needed",
    }
    assert {g["gate"]: g["state"] for g in after}["risk_warning"] == "done"


async def test_a_bad_document_upload_is_a_422_naming_the_field_and_writes_nothing(stack: Stack) -> None:
    una = await make_user(stack, tier=1)
    cases = [
        ({"id_doc_type": "LIBRARY_CARD", "country": "GB"}, ("p.jpg", PASSPORT, "image/jpeg"), "id_doc_type"),
        ({"id_doc_type": "PASSPORT", "country": "XX"}, ("p.jpg", PASSPORT, "image/jpeg"), "country"),
        ({"id_doc_type": "PASSPORT", "country": "GB"}, ("p.exe", b"MZ", "application/x-msdownload"), "file"),
        ({"id_doc_type": "PASSPORT", "country": "GB"}, ("p.jpg", b"", "image/jpeg"), "file"),
    ]
    async with stack.http() as c:
        for data, file, field in cases:
            r = await c.post(
                "/api/v1/kyc/tier2/documents", data=data, files={"file": file}, headers=una.headers()
            )
            assert r.status_code == 422, r.text
            assert r.json()["errors"][0]["field"] == field
    async with stack.engine.connect() as conn:
        count = (
            await conn.execute(text("SELECT count(*) FROM kyc_submissions WHERE user_id = :u"), {"u": una.id})
        ).scalar_one()
    assert count == 0
    assert not any(a.external_user_id == str(una.id) for a in stack.vendor.applicants.values())

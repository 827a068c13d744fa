"""An AML case through the compliance API: in the queue, assigned (pending → investigating), noted
(append-only, author and time), linked to a transaction, closed with an outcome; staff only, TOTP for
every change, refusals in the one problem shape."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy.exc
from sqlalchemy import text

from tests.aml.conftest import open_case, staff
from tests.payments.conftest import Stack, deposit_gbp, make_user

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_case_goes_from_pending_to_investigating_to_closed_with_notes_and_links(stack: Stack) -> None:
    customer = await make_user(stack)
    case_id = await open_case(stack, customer.id)
    alice, bob, reader = await staff(stack), await staff(stack), await staff(stack)
    carol, dave = await staff(stack), await staff(stack)  # a TOTP code per 30 s step: spread the calls
    approver = await make_user(stack, roles=["approver"])

    async with stack.http() as c:
        r = await c.get("/api/v1/admin/aml/cases", params={"limit": 1}, headers=reader.headers())
        assert r.status_code == 200, r.text
        page = r.json()
        assert [x["id"] for x in page["cases"]] == [str(case_id)]  # newest first
        first = page["cases"][0]
        assert (first["status"], first["alert_count"], first["score"]) == ("pending", 1, 30)
        assert first["workflow_id"] == f"sar-{case_id}"
        if page["next_cursor"]:
            r = await c.get(
                "/api/v1/admin/aml/cases", params={"limit": 1, "cursor": page["next_cursor"]},
                headers=reader.headers(),
            )  # fmt: skip
            assert r.status_code == 200 and str(case_id) not in r.text
        r = await c.get("/api/v1/admin/aml/cases", params={"cursor": "not-ours"}, headers=reader.headers())
        assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"
        r = await c.get("/api/v1/admin/aml/cases", headers=customer.headers())
        assert r.status_code == 403  # customers never see cases

        # Assignment: only to compliance staff, with TOTP; the case is then under investigation.
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/assign", json={"assignee_id": str(approver.id)},
            headers=alice.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 409 and r.json()["code"] == "case_refused", r.text
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/assign", json={"assignee_id": str(bob.id)},
            headers=alice.headers(),
        )  # fmt: skip
        assert r.status_code == 403, r.text  # no TOTP code
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/assign", json={"assignee_id": str(bob.id)},
            headers=alice.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["assignee_id"]) == ("investigating", str(bob.id))

        # Notes: appended with author and time.
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/notes", json={"body": "  source of funds requested  "},
            headers=bob.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 201, r.text
        note = r.json()
        assert (note["author_id"], note["body"]) == (str(bob.id), "source of funds requested")
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/notes", json={"body": "   "}, headers=bob.headers(totp=True)
        )
        assert r.status_code == 422, r.text

    # Links: one of the customer's own transactions, not anyone's.
    await deposit_gbp(stack, customer, "20.00")
    async with stack.engine.connect() as conn:
        deposit_id = (
            await conn.execute(text("SELECT id FROM deposits WHERE user_id = :u"), {"u": customer.id})
        ).scalar_one()
    async with stack.http() as c:
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/transactions",
            json={"kind": "deposit", "transaction_id": str(uuid.uuid4())}, headers=carol.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 409, r.text
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/transactions",
            json={"kind": "deposit", "transaction_id": str(deposit_id)}, headers=carol.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert {"kind": "deposit", "transaction_id": str(deposit_id), "source": "staff"} in r.json()[
            "transactions"
        ]

        # Closing: with an outcome and why; a closed case stays closed.
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/close",
            json={"outcome": "valuable_alert", "note": "customer explained; keep watching"},
            headers=alice.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 200, r.text
        closed = r.json()
        assert (closed["status"], closed["outcome"]) == ("closed", "valuable_alert")
        assert closed["closed_at"] is not None
        assert [n["author_id"] for n in closed["notes"]] == [str(bob.id), str(alice.id)]
        r = await c.post(
            f"/api/v1/admin/aml/cases/{case_id}/close",
            json={"outcome": "confirmed_risk", "note": "changed my mind"}, headers=dave.headers(totp=True),
        )  # fmt: skip
        assert r.status_code == 409 and r.json()["code"] == "case_refused", r.text
        r = await c.get(f"/api/v1/admin/aml/cases/{uuid.uuid4()}", headers=reader.headers())
        assert r.status_code == 404 and r.json()["code"] == "case_not_found"

    # The file is append-only in the database itself.
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="append-only"):
        async with stack.engine.begin() as conn:
            await conn.execute(
                text("UPDATE aml_case_notes SET body = 'x' WHERE case_id = :c"), {"c": case_id}
            )
    async with stack.engine.connect() as conn:
        audited = (
            await conn.execute(
                text(
                    "SELECT array_agg(action ORDER BY created_at) FROM audit_log WHERE target_id = :c "
                    "AND action LIKE 'aml.case.%'"
                ),
                {"c": str(case_id)},
            )
        ).scalar_one()
    assert audited == ["aml.case.assigned", "aml.case.linked", "aml.case.closed"]

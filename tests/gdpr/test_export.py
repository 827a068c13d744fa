"""The subject-access export end to end: the API starts the saga, the worker builds the zip and emails a
signed link, the owner downloads it. The zip has every section in JSON and CSV with the same values, and
nothing of AML: no alerts, screening results, vendor verdicts, internal reasons or flags."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import re
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import text

from services import gdpr_links, gdpr_requests
from services.gdpr_archive import csv_cell
from tests.gdpr.conftest import Stack, make_user, pay_in_and_out, wait_for

SECTIONS = {
    "profile", "kyc", "balances", "ledger", "orders", "trades", "deposits", "withdrawals", "bank_accounts",
    "withdrawal_addresses", "sessions", "notifications", "consents",
}  # fmt: skip
AML_MARKER = "AMLSECRET"  # written into every AML record and internal reason below; must appear nowhere


async def _seed_records(stack: Stack, user_id: uuid.UUID) -> None:
    """A customer's business records, each with an AML or internal detail beside it."""
    order_id, kyc_id = uuid.uuid4(), uuid.uuid4()
    async with stack.engine.begin() as conn:
        for sql, params in [
            (
                "INSERT INTO orders (id, user_id, symbol, side, type, status, quote_amount, filled_amount, "
                "filled_quote_amount, average_fill_price, total_fee, fee_currency, routed_to_provider, "
                "execution_record) VALUES (:id, :u, 'BTC-GBP', 'BUY', 'MARKET', 'FILLED', 40, 0.001, 40, "
                "40000, 0.2, 'GBP', 'binance', CAST(:rec AS jsonb))",
                {"id": order_id, "u": user_id, "rec": json.dumps({"venue_note": AML_MARKER})},
            ),
            (
                "INSERT INTO trades (id, order_id, user_id, symbol, side, amount, price, fee, fee_currency, "
                "provider) VALUES (:id, :o, :u, 'BTC-GBP', 'BUY', 0.001, 40000, 0.2, 'GBP', 'binance')",
                {"id": uuid.uuid4(), "o": order_id, "u": user_id},
            ),
            (
                "INSERT INTO deposits (id, user_id, currency, amount, status, payment_method, provider, "
                "provider_tx_id, reference, details) VALUES (:id, :u, 'GBP', 100, 'CONFIRMED', "
                "'BANK_TRANSFER', 'bank', :tx, 'REF123', CAST(:d AS jsonb))",
                {
                    "id": uuid.uuid4(),
                    "u": user_id,
                    "tx": uuid.uuid4().hex,
                    "d": json.dumps({"payer_name": "ADA QUARTERMAINE", "screening": AML_MARKER}),
                },
            ),
            (
                "INSERT INTO withdrawals (id, user_id, currency, amount, fee, status, destination_type, "
                "destination_address, flagged) VALUES (:id, :u, 'BTC', 0.0005, 0.0001, 'COMPLETED', "
                "'crypto', 'bc1qexampleaddress', true)",
                {"id": uuid.uuid4(), "u": user_id},
            ),
            (
                "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, status) "
                "VALUES (:id, :u, 'ADA QUARTERMAINE', '040004', '12345678', 'CONFIRMED')",
                {"id": uuid.uuid4(), "u": user_id},
            ),
            (
                "INSERT INTO kyc_submissions (id, user_id, tier, status, provider, details, vendor_result, "
                "rejection_reason) VALUES (:id, :u, 1, 'APPROVED', 'internal', CAST(:d AS jsonb), "
                "CAST(:v AS jsonb), :why)",
                {
                    "id": kyc_id,
                    "u": user_id,
                    "d": json.dumps(
                        {
                            "first_name": "Ada",
                            "last_name": "Quartermaine",
                            "date_of_birth": "1980-02-03",
                            "screening": {"possible_match": True, "note": AML_MARKER},
                        }
                    ),
                    "v": json.dumps({"reviewAnswer": "GREEN", "pep": AML_MARKER}),
                    "why": AML_MARKER,
                },
            ),
            (
                "INSERT INTO aml_checks (id, user_id, check_type, provider, result, risk_score, details) "
                "VALUES (:id, :u, 'sanctions', 'internal', 'REVIEW', 90, CAST(:d AS jsonb))",
                {"id": uuid.uuid4(), "u": user_id, "d": json.dumps({"match": AML_MARKER})},
            ),
            (
                "INSERT INTO audit_log (id, actor_type, action, target_type, target_id, details) "
                "VALUES (:id, 'system', 'aml.alert.raised', 'user', :t, CAST(:d AS jsonb))",
                {"id": uuid.uuid4(), "t": str(user_id), "d": json.dumps({"why": AML_MARKER})},
            ),
            (
                "INSERT INTO first_trade_gates (user_id, risk_warning_version, risk_warning_acknowledged_at, "
                "category, declaration, categorised_at) VALUES (:u, 'rw-1', now(), 'restricted', "
                "CAST(:d AS jsonb), now())",
                {"u": user_id, "d": json.dumps({"accepted": True})},
            ),
            (
                "INSERT INTO appropriateness_attempts (id, user_id, questionnaire_version, answers, correct, "
                "total, missed_fundamental, passed) "
                "VALUES (:id, :u, 'q-1', CAST(:a AS jsonb), 5, 5, false, true)",
                {"id": uuid.uuid4(), "u": user_id, "a": json.dumps({"q1": "b"})},
            ),
        ]:
            await conn.execute(text(sql), cast(dict[str, Any], params))


def _read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {name: z.read(name) for name in z.namelist()}


async def _download(stack: Stack, email: str, token: str) -> tuple[str, bytes]:
    """The link from the export email, and the zip it serves to its owner."""
    mails = await wait_for(
        lambda: _mails_with(stack, email, "data export"),
    )
    link = re.search(r"https?://\S+/api/v1/account/export/\S+", mails[-1]["text"])
    assert link is not None, mails[-1]["text"]
    path = link.group(0).split("://", 1)[1].split("/", 1)[1]
    async with stack.http() as c:
        r = await c.get(f"/{path}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    return f"/{path}", r.content


async def _mails_with(stack: Stack, email: str, word: str) -> list[dict[str, Any]] | None:
    mails = [m for m in await stack.mail_to(email) if word in m["subject"]]
    return mails or None


async def test_the_export_has_every_section_in_json_and_csv_that_agree_and_no_aml_material(
    stack: Stack,
) -> None:
    person = await make_user(stack)
    await pay_in_and_out(stack, person.id, "100.00", out="25.50")
    await _seed_records(stack, person.id)

    async with stack.http() as c:
        r = await c.post("/api/v1/account/export", headers=person.auth)
    assert r.status_code == 202, r.text
    export = r.json()
    assert export["status"] == "REQUESTED" and export["workflow_id"] == f"gdpr-export-{export['id']}"
    requested = datetime.fromisoformat(export["requested_at"])
    due = datetime.fromisoformat(export["due_at"])
    assert requested + timedelta(days=28) <= due <= requested + timedelta(days=31)

    _, data = await _download(stack, person.email, person.token)
    files = _read_zip(data)

    # Every section, in both formats, and nothing else.
    manifest = json.loads(files.pop("manifest.json"))
    assert {s["name"] for s in manifest["sections"]} == SECTIONS
    assert set(files) == {f"json/{s}.json" for s in SECTIONS} | {f"csv/{s}.csv" for s in SECTIONS}

    # CSV and JSON hold the same values, row for row.
    sections: dict[str, list[dict[str, Any]]] = {}
    for name in SECTIONS:
        rows = json.loads(files[f"json/{name}.json"])
        table = list(csv.reader(io.StringIO(files[f"csv/{name}.csv"].decode())))
        header, body = table[0], table[1:]
        assert len(body) == len(rows), name
        for row, cells in zip(rows, body, strict=True):
            assert list(row) == header, name
            assert [csv_cell(v) for v in row.values()] == cells, name
        sections[name] = rows

    # The customer's data is there.
    assert (
        sections["profile"][0]["email"] == person.email and sections["profile"][0]["phone"] == "+447700900123"
    )
    assert sections["balances"] == [
        {"currency": "GBP", "balance": "74.50", "available": "74.50", "reserved": "0.00"}
    ]
    assert sorted(e["amount"] for e in sections["ledger"]) == ["-25.50", "100.00"]
    assert all(len(e["hash"]) == 64 for e in sections["ledger"])
    assert (
        sections["orders"][0]["status"] == "FILLED" and sections["orders"][0]["filled_amount"] == "0.00100000"
    )
    assert sections["trades"][0]["price"] == "40000.00"
    assert sections["deposits"][0]["amount"] == "100.00" and sections["deposits"][0]["reference"] == "REF123"
    assert sections["withdrawals"][0]["destination"] == "bc1qexampleaddress"
    assert sections["bank_accounts"][0]["account_number"] == "12345678"
    assert len(sections["sessions"]) == 1 and sections["sessions"][0]["user_agent"] == "gdpr-tests/1.0"
    assert {c["kind"] for c in sections["consents"]} == {
        "risk_warning", "investor_category", "appropriateness_assessment",
    }  # fmt: skip
    assert json.loads(sections["kyc"][0]["submitted"]) == {
        "first_name": "Ada", "last_name": "Quartermaine", "date_of_birth": "1980-02-03",
    }  # fmt: skip

    # No AML material: not the marker, not the flag, not the vendor verdict or an internal reason.
    for name, content in files.items():
        assert AML_MARKER.encode() not in content, name
        assert (
            b"flagged" not in content
            and b"reviewAnswer" not in content
            and b"rejection_reason" not in content
        )
        assert b"aml" not in name.encode() and b"screening" not in name.encode()
    assert AML_MARKER.encode() not in files["json/kyc.json"]

    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, sha256, size_bytes, emailed_at FROM gdpr_export_requests WHERE id = :id"
                ),
                {"id": export["id"]},
            )
        ).one()
    assert row.status == "READY" and row.emailed_at is not None and row.size_bytes == len(data)
    assert row.sha256 == hashlib.sha256(data).hexdigest()


async def test_a_repeat_request_joins_the_one_being_prepared_even_when_concurrent(stack: Stack) -> None:
    person = await make_user(stack)
    now = datetime.now(UTC)
    first = await asyncio.gather(
        *(gdpr_requests.request_export(stack.engine, person.id, now=now) for _ in range(6))
    )
    assert len({e.id for e in first}) == 1
    async with stack.engine.connect() as conn:
        count = (
            await conn.execute(
                text("SELECT count(*) FROM gdpr_export_requests WHERE user_id = :u"), {"u": person.id}
            )
        ).scalar_one()
    assert count == 1


async def test_the_download_link_works_only_for_its_owner_with_a_valid_unexpired_token(stack: Stack) -> None:
    owner = await make_user(stack)
    other = await make_user(stack)
    async with stack.http() as c:
        r = await c.post("/api/v1/account/export", headers=owner.auth)
        assert r.status_code == 202, r.text
        export_id = r.json()["id"]
        path, _ = await _download(stack, owner.email, owner.token)

        # Another customer with the owner's link: not found (not even "forbidden").
        r = await c.get(path, headers=other.auth)
        assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
        # No login: 401. No token: 422. A token altered, or for another export: 403.
        assert (await c.get(path)).status_code == 401
        bare = path.split("?", 1)[0]
        assert (await c.get(bare, headers=owner.auth)).status_code == 422
        r = await c.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"), headers=owner.auth)
        assert r.status_code == 403 and r.json()["code"] == "export_link_invalid"
        now = datetime.now(UTC)
        foreign = gdpr_links.link_token(
            stack.settings, uuid.uuid4(), owner.id, now=now, expires_at=now + timedelta(hours=1)
        )
        r = await c.get(f"{bare}?token={foreign}", headers=owner.auth)
        assert r.status_code == 403 and r.json()["code"] == "export_link_invalid"
        # A link past its expiry: 410, and nothing served.
        stale = gdpr_links.link_token(
            stack.settings,
            uuid.UUID(export_id),
            owner.id,
            now=now - timedelta(hours=2),
            expires_at=now - timedelta(seconds=1),
        )
        r = await c.get(f"{bare}?token={stale}", headers=owner.auth)
        assert r.status_code == 410 and r.json()["code"] == "export_link_expired"
        assert "Traceback" not in r.text


async def test_ops_see_requests_past_their_one_month_deadline_and_customers_do_not(stack: Stack) -> None:
    customer = await make_user(stack)
    ops = await make_user(stack, roles=["ops"], prefix="ops")
    late = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO gdpr_export_requests (id, user_id, status, due_at, created_at) "
                "VALUES (:id, :u, 'REQUESTED', now() - interval '1 day', now() - interval '32 days')"
            ),
            {"id": late, "u": customer.id},
        )
    async with stack.http() as c:
        r = await c.get("/api/v1/admin/gdpr/exports/overdue", headers=ops.auth)
        assert r.status_code == 200, r.text
        overdue = {o["id"]: o for o in r.json()}
        assert str(late) in overdue and overdue[str(late)]["workflow_id"] == f"gdpr-export-{late}"
        r = await c.get("/api/v1/admin/gdpr/exports/overdue", headers=customer.auth)
        assert r.status_code == 403
        mine = await c.get("/api/v1/account/export", headers=customer.auth)
        assert [e["id"] for e in mine.json()] == [str(late)]


async def test_a_request_whose_saga_never_started_is_picked_up_by_the_repeat(stack: Stack) -> None:
    """Temporal was down after the request was recorded (the customer got a 503): asking again starts the
    saga for that same request, which is then delivered."""
    person = await make_user(stack)
    recorded = await gdpr_requests.request_export(stack.engine, person.id, now=datetime.now(UTC))
    async with stack.http() as c:
        r = await c.post("/api/v1/account/export", headers=person.auth)
    assert r.status_code == 202 and r.json()["id"] == str(recorded.id)
    await _download(stack, person.email, person.token)
    (listed,) = await gdpr_requests.list_requests(stack.engine, person.id)
    assert listed.id == recorded.id and listed.status == "READY"

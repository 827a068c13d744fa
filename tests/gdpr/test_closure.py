"""Closing an account over the API: refused with every reason while money or work is in flight, with
nothing changed; otherwise login is locked, every session revoked, the closure audited and the retention
saga started."""

from __future__ import annotations

import uuid
from typing import Any

import pyotp
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from models.gdpr import retention_workflow_id
from models.sealed import seal
from tests.gdpr.conftest import Person, Stack, login, make_user, pay_in_and_out


async def _state(stack: Stack, user_id: uuid.UUID) -> dict[str, Any]:
    async with stack.engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM users WHERE id = :u"), {"u": user_id})
        ).scalar_one()
        live_sessions = (
            await conn.execute(
                text("SELECT count(*) FROM auth_sessions WHERE user_id = :u AND revoked_at IS NULL"),
                {"u": user_id},
            )
        ).scalar_one()
        closures = (
            await conn.execute(
                text("SELECT count(*) FROM account_closures WHERE user_id = :u"), {"u": user_id}
            )
        ).scalar_one()
        audits = (
            (
                await conn.execute(
                    text("SELECT action FROM audit_log WHERE target_id = :t AND action LIKE 'account.%'"),
                    {"t": str(user_id)},
                )
            )
            .scalars()
            .all()
        )
        balances = (
            await conn.execute(
                text("SELECT currency, balance FROM accounts WHERE user_id = :u ORDER BY currency"),
                {"u": user_id},
            )
        ).all()
    return {
        "status": status,
        "live_sessions": live_sessions,
        "closures": closures,
        "audits": list(audits),
        "balances": [tuple(b) for b in balances],
    }


async def _no_retention_saga(stack: Stack, user_id: uuid.UUID) -> None:
    with pytest.raises(RPCError):
        await stack.client.get_workflow_handle(retention_workflow_id(user_id)).describe()


async def _close(stack: Stack, person: Person) -> Any:
    async with stack.http() as c:
        return await c.post("/api/v1/account/close", headers=person.auth)


async def test_closing_with_a_balance_or_an_open_order_is_refused_with_every_reason_and_changes_nothing(
    stack: Stack,
) -> None:
    person = await make_user(stack)
    await pay_in_and_out(stack, person.id, "50.00")
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO orders (id, user_id, symbol, side, type, status, amount, price) "
                "VALUES (:id, :u, 'BTC-GBP', 'SELL', 'LIMIT', 'OPEN', 0.001, 90000)"
            ),
            {"id": uuid.uuid4(), "u": person.id},
        )
    before = await _state(stack, person.id)

    r = await _close(stack, person)

    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "balance_remaining"
    assert "GBP" in body["detail"] and "order" in body["detail"]
    assert await _state(stack, person.id) == before
    assert before["status"] == "ACTIVE" and before["live_sessions"] == 1 and before["closures"] == 0
    await _no_retention_saga(stack, person.id)


async def test_a_customer_under_an_aml_freeze_is_sent_to_support_too(stack: Stack) -> None:
    person = await make_user(stack)
    staff = await make_user(stack)
    async with stack.engine.begin() as conn:  # compliance froze the customer (services/aml/freeze.py)
        await conn.execute(
            text("INSERT INTO aml_freezes (id, user_id, reason, frozen_by) VALUES (:id, :u, 'case', :s)"),
            {"id": uuid.uuid4(), "u": person.id, "s": staff.id},
        )
    r = await _close(stack, person)
    assert r.status_code == 409 and r.json()["code"] == "contact_support", r.text
    for word in ("frozen", "freeze", "aml", "suspicious", "review"):
        assert word not in r.text.lower()
    state = await _state(stack, person.id)
    assert state["status"] == "ACTIVE" and state["closures"] == 0 and state["live_sessions"] == 1
    await _no_retention_saga(stack, person.id)
    async with stack.http() as c:  # still logged in
        assert (await c.get("/api/v1/accounts/balances", headers=person.auth)).status_code == 200


async def test_closing_with_only_a_withdrawal_in_flight_is_refused(stack: Stack) -> None:
    person = await make_user(stack)
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO withdrawals (id, user_id, currency, amount, status, destination_type) "
                "VALUES (:id, :u, 'GBP', 10, 'AWAITING_APPROVAL', 'bank')"
            ),
            {"id": uuid.uuid4(), "u": person.id},
        )
    r = await _close(stack, person)
    assert r.status_code == 409 and r.json()["code"] == "pending_withdrawals"
    assert (await _state(stack, person.id))["status"] == "ACTIVE"


async def test_closing_an_empty_account_locks_login_revokes_every_session_and_starts_retention(
    stack: Stack,
) -> None:
    person = await make_user(stack)
    second = await login(stack, person.email)  # another device
    await pay_in_and_out(stack, person.id, "20.00", out="20.00")  # had money once; none now
    async with stack.engine.begin() as conn:  # an AML case on file: kept five years after the relationship
        await conn.execute(
            text(
                "INSERT INTO aml_cases (id, user_id, status, outcome, due_at) "
                "VALUES (:id, :u, 'closed', 'false_positive', now())"
            ),
            {"id": uuid.uuid4(), "u": person.id},
        )

    r = await _close(stack, person)

    assert r.status_code == 200, r.text
    closure = r.json()
    assert closure["status"] == "CLOSED" and closure["workflow_id"] == retention_workflow_id(person.id)
    assert closure["personal_data_kept_until"][:4] == str(int(closure["closed_at"][:4]) + 5)
    state = await _state(stack, person.id)
    assert state["status"] == "CLOSED" and state["live_sessions"] == 0 and state["closures"] == 1
    assert state["audits"] == ["account.closed"]
    async with stack.engine.connect() as conn:  # MLR 2017 reg. 40: dated five years from the closure
        kept = (
            await conn.execute(
                text("SELECT retention_until FROM aml_cases WHERE user_id = :u"), {"u": person.id}
            )
        ).scalar_one()
    assert kept.isoformat()[:10] == closure["personal_data_kept_until"][:10], kept
    async with stack.http() as c:
        for token in (person.token, second["token"]):  # both devices are signed out at once
            r = await c.get("/api/v1/accounts/balances", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, r.text
        r = await c.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
        assert r.status_code in (401, 403), r.text
    await login(stack, person.email, expect=403)  # and nobody can sign in again

    handle = stack.client.get_workflow_handle(retention_workflow_id(person.id))
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING  # asleep for five years
    await handle.terminate("test over")  # the five years themselves run in test_retention.py


async def test_a_customer_with_two_factor_authentication_closes_only_with_a_current_code(
    stack: Stack,
) -> None:
    person = await make_user(stack)
    secret = pyotp.random_base32()
    async with stack.engine.begin() as conn:  # 2FA after the login (which would otherwise ask for a code)
        await conn.execute(
            text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
            {"s": seal(secret), "id": person.id},
        )
    async with stack.http() as c:
        r = await c.post("/api/v1/account/close", headers=person.auth)
        assert r.status_code == 403 and r.json()["code"] == "totp_required", r.text
        assert (await _state(stack, person.id))["status"] == "ACTIVE"
        code = pyotp.TOTP(secret).now()
        r = await c.post("/api/v1/account/close", headers={**person.auth, "X-TOTP-Code": code})
        assert r.status_code == 200, r.text
    assert (await _state(stack, person.id))["status"] == "CLOSED"
    await stack.client.get_workflow_handle(retention_workflow_id(person.id)).terminate("test over")


async def test_a_frozen_account_is_sent_to_support_in_words_that_say_nothing_of_why(stack: Stack) -> None:
    person = await make_user(stack)
    async with stack.engine.begin() as conn:  # frozen by sanctions screening (services/screening)
        await conn.execute(text("UPDATE users SET status = 'FROZEN' WHERE id = :u"), {"u": person.id})
    r = await _close(stack, person)
    assert r.status_code == 409 and r.json()["code"] == "contact_support", r.text
    for word in ("frozen", "freeze", "screening", "sanction", "aml", "suspicious", "review"):
        assert word not in r.text.lower()
    state = await _state(stack, person.id)
    assert state["status"] == "FROZEN" and state["closures"] == 0 and state["live_sessions"] == 1
    await _no_retention_saga(stack, person.id)

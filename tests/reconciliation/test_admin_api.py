"""The staff API of reconciliation over HTTP: ops only; runs and one run with its items; the halt lifted
only by two different staff, each with a TOTP code and a reason (never by the one-person unhalt)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pyotp
import pytest_asyncio
import uvicorn
from sqlalchemy import text

from api.main import create_app
from api.ratelimit import RateLimits
from devstack.ports import free_port
from models import sealed
from models.reconciliation import RunStatus
from services.passwords import hash_password
from tests.reconciliation.conftest import World

PASSWORD = "Correct-Horse-9-battery"


@pytest_asyncio.fixture
async def api(world: World, temporal_address: str) -> AsyncIterator[str]:
    port = free_port()
    app = create_app(
        world.settings,
        temporal_address=temporal_address,
        rate_limits=RateLimits(
            anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000
        ),
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def _user(world: World, api: str, roles: list[str]) -> tuple[str, pyotp.TOTP]:
    user_id, email, secret = uuid.uuid4(), f"staff-{uuid.uuid4().hex[:10]}@example.com", pyotp.random_base32()
    async with world.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified) "
                "VALUES (:id, :e, :p, 3, :r, true)"
            ),
            {"id": user_id, "e": email, "p": hash_password(PASSWORD), "r": roles},
        )
    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
    async with world.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
            {"s": sealed.seal(secret), "id": user_id},  # stored sealed, as enrolment stores it
        )
    return r.json()["access_token"], pyotp.TOTP(secret)


def _h(token: str, totp: pyotp.TOTP | None = None) -> dict[str, str]:
    h = {"Authorization": f"Bearer {token}"}
    if totp is not None:
        h["X-TOTP-Code"] = totp.at(time.time())
    return h


async def test_staff_api_lists_runs_and_needs_two_staff_with_totp_to_resume(world: World, api: str) -> None:
    balances = await world.control("binance", "GET", "/_control/balances")
    raw = balances["BNB"]["free"] if isinstance(balances["BNB"], dict) else balances["BNB"]
    await world.control("binance", "POST", "/_control/balances", json={"BNB": str(Decimal(str(raw)) + 7)})
    halting = await world.reconcile()
    assert halting.status("BNB") is RunStatus.DISCREPANCY
    await world.control("binance", "POST", "/_control/balances", json={"BNB": str(raw)})
    for _ in range(world.settings.reconciliation_clean_runs_to_resume):
        await world.reconcile()
    customer, _ = await _user(world, api, [])
    (alice, alice_totp), (bob, bob_totp) = await _user(world, api, ["ops"]), await _user(world, api, ["ops"])
    base = "/api/v1/admin/reconciliation"
    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        assert (await c.get(f"{base}/runs", headers=_h(customer))).status_code == 403
        runs = await c.get(f"{base}/runs", headers=_h(alice))
        assert runs.status_code == 200
        assert {r["run_id"] for r in runs.json()} >= {str(halting.run_id)}
        one = await c.get(f"{base}/runs/{halting.run_id}", headers=_h(alice))
        assert one.status_code == 200
        bnb = next(r for r in one.json() if r["currency"] == "BNB")
        assert bnb["status"] == "DISCREPANCY" and bnb["discrepancy"] == "7.00000000"
        assert (await c.get(f"{base}/runs/{uuid.uuid4()}", headers=_h(alice))).status_code == 404
        # The one-person unhalt cannot lift a reconciliation halt.
        assert (await c.delete("/api/v1/admin/halts/BNB", headers=_h(alice))).status_code == 409
        ack = f"{base}/halts/BNB/acknowledge"
        no_code = await c.post(ack, json={"reason": "checked"}, headers=_h(alice))
        assert no_code.status_code in (401, 403)
        first = await c.post(ack, json={"reason": "venue restored"}, headers=_h(alice, alice_totp))
        assert first.status_code == 200, first.text
        assert first.json() == {"currency": "BNB", "resumed": False}
        # The same person again is a domain refusal, answered in the one problem shape.
        again_code = {**_h(alice), "X-TOTP-Code": alice_totp.at(time.time() + 30)}
        again = await c.post(ack, json={"reason": "again"}, headers=again_code)
        assert again.status_code == 409 and again.json()["code"] == "resume_refused", again.text
        assert again.headers["content-type"].startswith("application/problem+json")
        await asyncio.sleep(0)
        second = await c.post(ack, json={"reason": "checked"}, headers=_h(bob, bob_totp))
        assert second.status_code == 200, second.text
        assert second.json() == {"currency": "BNB", "resumed": True}
    async with world.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM currency_halts"))).scalar_one() == 0
        actions = {
            r[0]
            for r in (
                await conn.execute(text("SELECT action FROM audit_log WHERE action LIKE 'reconciliation.%'"))
            ).all()
        }
    assert {"reconciliation.halt", "reconciliation.resume_ack", "reconciliation.resume"} <= actions


async def test_proof_of_liabilities_routes(world: World, api: str) -> None:
    token, _ = await _user(world, api, [])
    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        published = await c.get("/api/v1/proof-of-liabilities/BTC")
        assert published.status_code == 200
        assert set(published.json()) == {"currency", "cut_off", "root", "total", "leaves"}
        assert (await c.get("/api/v1/proof-of-liabilities/XYZ")).status_code == 404
        assert (await c.get("/api/v1/accounts/proof/BTC")).status_code == 401
        # A customer who joined after today's cut-off is not in today's tree.
        assert (await c.get("/api/v1/accounts/proof/BTC", headers=_h(token))).status_code == 404

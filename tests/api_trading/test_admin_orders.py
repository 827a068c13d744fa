"""The ops queue of orders waiting on an unknown placement, and of holds that outlived their owner."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pyotp
import pytest
from sqlalchemy import text

from config import Settings
from models.sealed import seal
from services.passwords import hash_password
from tests.api.conftest import PASSWORD
from tests.api_trading.conftest import Customer, Trading


@pytest.fixture
def settings(database_url: str, temporal_address: str) -> Settings:
    """NEEDS_ATTENTION after 1 s of not knowing (production: 15 min)."""
    return Settings(
        environment="test",
        database_url=database_url,
        temporal_address=temporal_address,
        order_unknown_recheck_first_s=0.2,
        order_unknown_recheck_max_s=0.5,
        order_unknown_attention_after_s=1,
    )


async def ops_headers(trading: Trading) -> dict[str, str]:
    """An ops user's bearer header (staff routes need the second factor turned on)."""
    ops = await ops_with_totp(trading)
    return {"Authorization": f"Bearer {ops.token}"}


async def test_an_order_whose_placement_is_unknown_is_in_the_ops_queue_until_the_venue_shows_it(
    trading: Trading,
) -> None:
    alice = await trading.customer(gbp="5000")
    ops = await ops_headers(trading)
    await trading.venues["binance"].fault("timeout_after_accept", count=1, mode="drop")
    await trading.venues["binance"].fault("not_found_lag", lookups=30)
    await trading.venues["kraken"].fault("maintenance", paths=["AddOrder"])
    body = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "amount": "0.01"}
    r = await trading.http.post("/api/v1/orders", json=body, headers=alice.headers())
    assert r.status_code == 202, r.text
    order_id = r.json()["id"]

    queued: list[dict[str, object]] = []
    for _ in range(300):
        r = await trading.http.get("/api/v1/admin/orders/attention", headers=ops)
        assert r.status_code == 200, r.text
        queued = [o for o in r.json() if o["id"] == order_id]
        if queued:
            break
        await asyncio.sleep(0.1)
    assert queued and queued[0]["hold_id"] is not None
    assert "binance" not in str(queued[0]["reason"])  # our words
    r = await trading.http.get(f"/api/v1/orders/{order_id}", headers=alice.headers())
    assert r.json()["status"] == "NEEDS_ATTENTION"
    assert (
        await trading.http.get("/api/v1/admin/orders/attention", headers=alice.headers())
    ).status_code == 403

    order = await trading.wait_order(alice, order_id)
    assert order["status"] == "FILLED"
    r = await trading.http.get("/api/v1/admin/orders/attention", headers=ops)
    assert all(o["id"] != order_id for o in r.json())


async def test_a_hold_that_outlived_its_order_is_listed_for_ops(trading: Trading) -> None:
    alice = await trading.customer(gbp="1000")
    ops = await ops_headers(trading)
    body = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "amount": "0.001"}
    r = await trading.http.post("/api/v1/orders", json=body, headers=alice.headers())
    order_id = r.json()["id"]
    assert (await trading.wait_order(alice, order_id))["status"] == "FILLED"
    account = await trading.ledger.customer_account(alice.id, "GBP")
    stray = await trading.ledger.reserve(
        account, "GBP", Decimal("4"), reference_type="ORDER", reference_id=uuid.UUID(order_id), step="stray"
    )
    try:
        r = await trading.http.get("/api/v1/admin/holds/orphaned", headers=ops)
        assert r.status_code == 200, r.text
        listed = [h for h in r.json() if h["hold_id"] == str(stray.hold_id)]
        assert listed == [
            {
                "hold_id": str(stray.hold_id),
                "reference_type": "ORDER",
                "reference_id": order_id,
                "currency": "GBP",
                "remaining": "4.00",
                "owner_status": "FILLED",
            }
        ]
        assert (
            await trading.http.get("/api/v1/admin/holds/orphaned", headers=alice.headers())
        ).status_code == 403
    finally:
        await trading.ledger.release(stray.hold_id)


async def ops_with_totp(trading: Trading) -> Customer:
    """An ops user with 2FA, logged in through the API (2FA turned on after the login)."""
    uid = uuid.uuid4()
    email = f"ops-{uid.hex[:12]}@example.com"
    secret = pyotp.random_base32()
    async with trading.engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified) "
                "VALUES (:i, :e, :p, 0, :r, true)"
            ),
            {"i": uid, "e": email, "p": hash_password(PASSWORD), "r": ["ops"]},
        )
    r = await trading.http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    async with trading.engine.begin() as c:
        await c.execute(
            text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :i"),
            {"s": seal(secret), "i": uid},
        )
    return Customer(uid, email, r.json()["access_token"], pyotp.TOTP(secret))


async def test_ops_resolve_an_unknown_placement_through_the_admin_api_with_totp(trading: Trading) -> None:
    """Binance's edge answers 502 to the placement (maybe received): the order waits for ops. Ops say
    the venue never got it (TOTP, ops role): the saga checks once more, then Kraken fills it."""
    alice = await trading.customer(gbp="5000")
    ops = await ops_with_totp(trading)
    await trading.venues["binance"].fault("http_error", status=502, count=1, paths=["/api/v3/order"])
    body = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "amount": "0.01"}
    r = await trading.http.post("/api/v1/orders", json=body, headers=alice.headers())
    assert r.status_code == 202, r.text
    order_id = r.json()["id"]
    for _ in range(300):
        r = await trading.http.get(f"/api/v1/orders/{order_id}", headers=alice.headers())
        if r.json()["status"] == "NEEDS_ATTENTION":
            break
        await asyncio.sleep(0.1)
    assert r.json()["status"] == "NEEDS_ATTENTION"
    url = f"/api/v1/admin/orders/{order_id}/resolve-placement"
    answer = {"absent": True, "note": "venue support: never received"}

    r = await trading.http.post(url, json=answer, headers=ops.headers())
    assert r.status_code == 403 and r.json()["code"] == "totp_required"
    r = await trading.http.post(url, json=answer, headers=alice.headers())
    assert r.status_code == 403
    both = {**answer, "venue_order_id": "123"}
    r = await trading.http.post(url, json=both, headers=ops.headers(totp=True))
    assert r.status_code == 422, r.text
    r = await trading.http.post(
        f"/api/v1/admin/orders/{uuid.uuid4()}/resolve-placement", json=answer, headers=ops.headers(totp=True)
    )
    assert r.status_code == 404, r.text
    assert (await trading.http.get(f"/api/v1/orders/{order_id}", headers=alice.headers())).json()[
        "status"
    ] == "NEEDS_ATTENTION"  # nothing above changed anything

    r = await trading.http.post(url, json=answer, headers=ops.headers(totp=True))
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] is True
    order = await trading.wait_order(alice, order_id)
    assert order["status"] == "FILLED"
    async with trading.engine.connect() as c:
        actors = (
            await c.execute(
                text(
                    "SELECT actor_id FROM audit_log WHERE target_id = :o "
                    "AND action = 'order.placement_absent'"
                ),
                {"o": order_id},
            )
        ).all()
    assert [a[0] for a in actors] == [ops.id]

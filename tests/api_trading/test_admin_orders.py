"""The ops queue of orders waiting on an unknown placement, and of holds that outlived their owner."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from sqlalchemy import text

from config import Settings
from services.passwords import hash_password
from tests.api.conftest import PASSWORD
from tests.api_trading.conftest import Trading


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
    uid = uuid.uuid4()
    email = f"ops-{uid.hex[:12]}@example.com"
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
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


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

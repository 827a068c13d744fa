"""Orders over HTTP: the real saga behind `POST /orders`, reads, cancel, idempotency, TOTP, isolation."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from api.idempotency import fingerprint
from models.api import OrderCreate
from tests.api.conftest import assert_problem
from tests.api_trading.conftest import Trading

D = Decimal
BUY_1000 = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "quote_amount": "1000.00"}


async def idempotency_keys(trading: Trading, user_id: uuid.UUID) -> int:
    """How many Idempotency-Key claims the customer holds (a refused or undone request leaves none)."""
    async with trading.engine.connect() as c:
        count = (
            await c.execute(
                text("SELECT count(*) FROM api_idempotency_keys WHERE user_id = :u"), {"u": user_id}
            )
        ).scalar_one()
    return int(count)


async def test_market_buy_fills_and_shows_everywhere(trading: Trading) -> None:
    alice = await trading.customer(gbp="5000")
    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=alice.headers())
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "PENDING" and created["quote_amount"] == "1000.00"
    assert r.headers["location"] == created["links"]["self"] == f"/api/v1/orders/{created['id']}"

    order = await trading.wait_order(alice, created["id"])
    assert order["status"] == "FILLED", order
    assert order["venues"] == ["binance"]
    # At most £1,000 fee included: sized at the 1 % protective price, so a fill at the touch spends a
    # little less; the 0.15 % fee is on what was spent.
    spent = D(order["filled_quote_amount"])
    assert D("985") < spent <= D("1000") and D(order["fee"]) == (spent * D("0.0015")).quantize(
        D("0.01"), "ROUND_CEILING"
    )
    assert isinstance(order["filled_amount"], str) and D(order["filled_amount"]) > 0

    r = await trading.http.get(created["links"]["execution"], headers=alice.headers())
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["route"] == "single" and record["legs"][0]["provider"] == "binance"
    assert {q["provider"] for q in record["quotes"]} == {"binance", "kraken"}
    assert isinstance(record["quote_amount"], str)

    r = await trading.http.get("/api/v1/orders", headers=alice.headers())
    assert [o["id"] for o in r.json()["orders"]] == [created["id"]]

    r = await trading.http.get("/api/v1/accounts/balances", headers=alice.headers())
    assert r.status_code == 200, r.text
    balances = {b["currency"]: b for b in r.json()["balances"]}
    assert set(balances) >= {"GBP", "BTC", "ETH", "BNB"}
    left = f"{D('5000') - spent.quantize(D('0.01'), 'ROUND_CEILING') - D(order['fee']):.2f}"
    assert balances["GBP"] == {"currency": "GBP", "balance": left, "available": left, "reserved": "0.00"}
    assert D(balances["BTC"]["balance"]) == D(order["filled_amount"])
    assert balances["ETH"]["balance"] == "0.00000000"

    r = await trading.http.get("/api/v1/accounts/ledger", headers=alice.headers())
    entries = r.json()["entries"]
    assert {e["currency"] for e in entries} == {"GBP", "BTC"}
    assert entries[0]["reference_type"] == "ORDER" and entries[-1]["reference_type"] == "DEPOSIT"
    r = await trading.http.get("/api/v1/accounts/ledger", params={"currency": "BTC"}, headers=alice.headers())
    assert [e["currency"] for e in r.json()["entries"]] == ["BTC"]
    assert D(r.json()["entries"][0]["amount"]) == D(order["filled_amount"])


async def test_sell_by_base_amount_goes_to_the_best_bid(trading: Trading) -> None:
    bob = await trading.customer(btc="1")
    body = {"symbol": "BTC-GBP", "side": "sell", "type": "market", "amount": "0.05"}  # case-insensitive enums
    r = await trading.http.post("/api/v1/orders", json=body, headers=bob.headers())
    assert r.status_code == 202, r.text
    order = await trading.wait_order(bob, r.json()["id"])
    assert order["status"] == "FILLED" and order["venues"] == ["kraken"]
    assert order["filled_quote_amount"] == "3397.50" and order["fee"] == "5.10"


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"symbol": "DOGE-GBP"}, "body.symbol", "unknown_symbol"),
        ({"symbol": "btc/gbp"}, "body.symbol", "validation_error"),
        ({"amount": "0.01"}, "body.amount", "invalid_size"),  # both amount and quote_amount
        ({"side": "SELL"}, "body.quote_amount", "invalid_size"),  # quote_amount on a sell
        ({"quote_amount": "0"}, "body.quote_amount", "invalid_size"),
        ({"quote_amount": "10.001"}, "body.quote_amount", "invalid_precision"),
        ({"quote_amount": 1000}, "body.quote_amount", "validation_error"),  # a JSON number, not a string
        ({"quote_amount": "1e3"}, "body.quote_amount", "validation_error"),
        ({"quote_amount": "-5"}, "body.quote_amount", "validation_error"),
        ({"side": "HOLD"}, "body.side", "validation_error"),
        ({"type": "STOP"}, "body.type", "validation_error"),
        ({"price": "68000"}, "body.price", "invalid_price"),  # a price on a market order
        ({"max_slippage": "0.9"}, "body.max_slippage", "invalid_slippage"),
        ({"expires_at": "2030-01-01T00:00:00Z"}, "body.expires_at", "invalid_expiry"),
        ({"leverage": "10"}, "body.leverage", "validation_error"),
    ],
)
async def test_bad_orders_are_422_naming_the_field_and_write_nothing(
    trading: Trading, change: dict[str, Any], field: str, code: str
) -> None:
    carol = await trading.customer(gbp="5000")
    body = {**BUY_1000, **change}
    r = await trading.http.post("/api/v1/orders", json=body, headers=carol.headers(key=str(uuid.uuid4())))
    problem = assert_problem(r, 422, code)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await trading.order_count(carol.id) == 0
    assert await idempotency_keys(trading, carol.id) == 0


async def test_limit_order_field_rules(trading: Trading) -> None:
    dave = await trading.customer(gbp="5000")
    limit = {"symbol": "BTC-GBP", "side": "BUY", "type": "LIMIT", "amount": "0.01"}
    cases = [
        ({}, "body.price", "invalid_price"),
        ({"price": "60000.123456789"}, "body.price", "invalid_precision"),
        ({"price": "60000", "amount": "0.000000001"}, "body.amount", "invalid_precision"),
        ({"price": "60000", "expires_at": "2001-01-01T00:00:00Z"}, "body.expires_at", "invalid_expiry"),
        ({"price": "60000", "expires_at": "2031-01-01T00:00:00"}, "body.expires_at", "validation_error"),
        ({"price": "60000", "max_slippage": "0.01"}, "body.max_slippage", "invalid_slippage"),
    ]
    for change, field, code in cases:
        r = await trading.http.post("/api/v1/orders", json={**limit, **change}, headers=dave.headers())
        problem = assert_problem(r, 422, code)
        assert field in [e["field"] for e in problem["errors"]], (change, problem)
    assert await trading.order_count(dave.id) == 0


async def test_limit_order_rests_and_is_cancelled(trading: Trading) -> None:
    erin = await trading.customer(gbp="5000")
    body = {"symbol": "BTC-GBP", "side": "BUY", "type": "LIMIT", "amount": "0.01", "price": "60000"}
    r = await trading.http.post("/api/v1/orders", json=body, headers=erin.headers())
    assert r.status_code == 202, r.text
    order_id = r.json()["id"]
    for _ in range(100):
        status = (await trading.http.get(f"/api/v1/orders/{order_id}", headers=erin.headers())).json()[
            "status"
        ]
        if status == "OPEN":
            break
        await asyncio.sleep(0.1)
    assert status == "OPEN"
    balances = (await trading.http.get("/api/v1/accounts/balances", headers=erin.headers())).json()[
        "balances"
    ]
    gbp = next(b for b in balances if b["currency"] == "GBP")
    assert D(gbp["reserved"]) > 0 and D(gbp["available"]) < D("5000")

    r = await trading.http.post(
        f"/api/v1/orders/{order_id}/cancel", json={"reason": "changed my mind"}, headers=erin.headers()
    )
    assert r.status_code == 202, r.text
    order = await trading.wait_order(erin, order_id)
    assert order["status"] == "CANCELLED"
    balances = (await trading.http.get("/api/v1/accounts/balances", headers=erin.headers())).json()[
        "balances"
    ]
    assert next(b for b in balances if b["currency"] == "GBP")["reserved"] == "0.00"

    r = await trading.http.post(f"/api/v1/orders/{order_id}/cancel", headers=erin.headers())
    assert_problem(r, 409, "order_final")


async def test_another_customers_order_is_404_everywhere(trading: Trading) -> None:
    owner = await trading.customer(gbp="5000")
    other = await trading.customer(gbp="5000")
    body = {"symbol": "BTC-GBP", "side": "BUY", "type": "LIMIT", "amount": "0.01", "price": "60000"}
    r = await trading.http.post("/api/v1/orders", json=body, headers=owner.headers())
    order_id = r.json()["id"]
    for path in (f"/api/v1/orders/{order_id}", f"/api/v1/orders/{order_id}/execution"):
        assert_problem(await trading.http.get(path, headers=other.headers()), 404, "order_not_found")
    r = await trading.http.post(f"/api/v1/orders/{order_id}/cancel", headers=other.headers())
    assert_problem(r, 404, "order_not_found")
    assert (await trading.http.get("/api/v1/orders", headers=other.headers())).json()["orders"] == []
    assert_problem(await trading.http.get(f"/api/v1/orders/{uuid.uuid4()}", headers=owner.headers()), 404)
    assert_problem(await trading.http.get("/api/v1/orders/not-a-uuid", headers=owner.headers()), 422)
    # The other customer's cancel did nothing: the owner's order still rests; the owner cancels it.
    status = (await trading.http.get(f"/api/v1/orders/{order_id}", headers=owner.headers())).json()["status"]
    assert status in {"PENDING", "ROUTED", "OPEN"}
    assert (
        await trading.http.post(f"/api/v1/orders/{order_id}/cancel", headers=owner.headers())
    ).status_code == 202
    assert (await trading.wait_order(owner, order_id))["status"] == "CANCELLED"


async def test_idempotency_key_replays_the_first_response_and_trades_once(trading: Trading) -> None:
    frank = await trading.customer(gbp="5000")
    key = str(uuid.uuid4())
    first = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=frank.headers(key=key))
    assert first.status_code == 202, first.text
    second = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=frank.headers(key=key))
    assert second.status_code == 202 and second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    # Key order in the JSON does not make it a different request.
    reordered = dict(reversed(list(BUY_1000.items())))
    third = await trading.http.post("/api/v1/orders", json=reordered, headers=frank.headers(key=key))
    assert third.json()["id"] == first.json()["id"]

    changed = {**BUY_1000, "quote_amount": "999.00"}
    r = await trading.http.post("/api/v1/orders", json=changed, headers=frank.headers(key=key))
    problem = assert_problem(r, 422, "idempotency_key_reused")
    assert problem["errors"][0]["field"] == "header.Idempotency-Key"

    await trading.wait_order(frank, first.json()["id"])
    assert await trading.order_count(frank.id) == 1
    # The key is per customer: another customer's same key is their own.
    grace = await trading.customer(gbp="5000")
    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=grace.headers(key=key))
    assert r.status_code == 202 and r.json()["id"] != first.json()["id"]
    await trading.wait_order(grace, r.json()["id"])


async def test_idempotency_key_in_flight_is_409(trading: Trading) -> None:
    heidi = await trading.customer(gbp="5000")
    key = str(uuid.uuid4())
    # A first request with this key is being processed (claimed, no response yet).
    fields = OrderCreate.model_validate(BUY_1000).model_dump(mode="json", exclude_none=True)
    async with trading.engine.begin() as c:
        await c.execute(
            text(
                "INSERT INTO api_idempotency_keys (user_id, key, method, path, request_hash, state) "
                "VALUES (:u, :k, 'POST', '/api/v1/orders', :h, 'in_flight')"
            ),
            {"u": heidi.id, "k": key, "h": fingerprint("POST", "/api/v1/orders", fields)},
        )
    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=heidi.headers(key=key))
    assert_problem(r, 409, "idempotency_in_flight")
    assert r.headers["retry-after"] == "1"
    assert await trading.order_count(heidi.id) == 0


async def test_concurrent_repeats_make_one_order(trading: Trading) -> None:
    ivan = await trading.customer(gbp="5000")
    key = str(uuid.uuid4())
    responses = await asyncio.gather(
        *(trading.http.post("/api/v1/orders", json=BUY_1000, headers=ivan.headers(key=key)) for _ in range(6))
    )
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {202, 409} and 202 in statuses, statuses
    ids = {r.json()["id"] for r in responses if r.status_code == 202}
    assert len(ids) == 1
    await trading.wait_order(ivan, ids.pop())
    assert await trading.order_count(ivan.id) == 1


async def test_a_failed_request_releases_its_key(trading: Trading) -> None:
    judy = await trading.customer(gbp="20000", tier=3, twofa=True)
    key = str(uuid.uuid4())
    big = {**BUY_1000, "quote_amount": "12000.00"}
    r = await trading.http.post("/api/v1/orders", json=big, headers=judy.headers(key=key))
    assert_problem(r, 403, "totp_required")
    # Same key, now with the code: processed (not replayed as the 403, not refused as in flight).
    r = await trading.http.post("/api/v1/orders", json=big, headers=judy.headers(key=key, totp=True))
    assert r.status_code == 202, r.text
    assert (await trading.wait_order(judy, r.json()["id"]))["status"] == "FILLED"


async def test_trades_above_10k_need_the_second_factor(trading: Trading) -> None:
    kim = await trading.customer(gbp="30000", tier=3, twofa=True)
    big = {**BUY_1000, "quote_amount": "10000.01"}
    problem = assert_problem(await trading.http.post("/api/v1/orders", json=big, headers=kim.headers()), 403)
    assert problem["code"] == "totp_required" and problem["errors"][0]["field"] == "header.X-TOTP-Code"
    bad = {**kim.headers(), "X-TOTP-Code": "000000"}
    assert_problem(await trading.http.post("/api/v1/orders", json=big, headers=bad), 403, "totp_invalid")
    # By base amount the notional comes from the best ask: 0.15 BTC x £68,000 = £10,200.
    by_amount = {"symbol": "BTC-GBP", "side": "BUY", "type": "MARKET", "amount": "0.15"}
    assert_problem(await trading.http.post("/api/v1/orders", json=by_amount, headers=kim.headers()), 403)
    limit = {"symbol": "BTC-GBP", "side": "BUY", "type": "LIMIT", "amount": "0.2", "price": "60000"}
    assert_problem(await trading.http.post("/api/v1/orders", json=limit, headers=kim.headers()), 403)
    assert await trading.order_count(kim.id) == 0

    r = await trading.http.post("/api/v1/orders", json=big, headers=kim.headers(totp=True))
    assert r.status_code == 202, r.text
    assert (await trading.wait_order(kim, r.json()["id"]))["status"] == "FILLED"
    # Exactly at the threshold: no code needed.
    at = {**BUY_1000, "quote_amount": "10000.00"}
    r = await trading.http.post("/api/v1/orders", json=at, headers=kim.headers())
    assert r.status_code == 202, r.text
    await trading.wait_order(kim, r.json()["id"])

    no2fa = await trading.customer(gbp="30000", tier=3)
    r = await trading.http.post("/api/v1/orders", json=big, headers=no2fa.headers())
    assert_problem(r, 403, "totp_enrollment_required")


async def test_rejected_by_the_saga_is_visible_with_its_reason(trading: Trading) -> None:
    poor = await trading.customer(gbp="100")
    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=poor.headers())
    assert r.status_code == 202
    order = await trading.wait_order(poor, r.json()["id"])
    assert order["status"] == "REJECTED" and "insufficient" in order["reason"]


async def test_list_pagination_and_filters(trading: Trading) -> None:
    liam = await trading.customer(gbp="5000")
    ids = []
    for amount in ("50.00", "60.00", "70.00"):
        r = await trading.http.post(
            "/api/v1/orders", json={**BUY_1000, "quote_amount": amount}, headers=liam.headers()
        )
        ids.append(r.json()["id"])
        await trading.wait_order(liam, ids[-1])
    r = await trading.http.get("/api/v1/orders", params={"limit": 2}, headers=liam.headers())
    page = r.json()
    assert [o["id"] for o in page["orders"]] == ids[:0:-1] and page["next_cursor"]
    r = await trading.http.get(
        "/api/v1/orders", params={"limit": 2, "cursor": page["next_cursor"]}, headers=liam.headers()
    )
    assert [o["id"] for o in r.json()["orders"]] == ids[:1] and r.json()["next_cursor"] is None
    for params, expected in (
        ({"status": "FILLED"}, 3),
        ({"status": "OPEN"}, 0),
        ({"side": "SELL"}, 0),
        ({"side": "BUY", "symbol": "BTC-GBP"}, 3),
        ({"symbol": "ETH-GBP"}, 0),
    ):
        r = await trading.http.get("/api/v1/orders", params=params, headers=liam.headers())
        assert len(r.json()["orders"]) == expected, params
    bad: list[tuple[dict[str, str | int], str]] = [
        ({"cursor": "not-a-cursor"}, "query.cursor"),
        ({"status": "DONE"}, "query.status"),
        ({"limit": 0}, "query.limit"),
        ({"symbol": "btc"}, "query.symbol"),
    ]
    for bad_params, field in bad:
        problem = assert_problem(
            await trading.http.get("/api/v1/orders", params=bad_params, headers=liam.headers()), 422
        )
        assert field in [e["field"] for e in problem["errors"]], bad_params


async def test_accounts_pagination_and_bad_input(trading: Trading) -> None:
    mia = await trading.customer(gbp="100", btc="0.5")
    r = await trading.http.get("/api/v1/accounts/ledger", params={"limit": 1}, headers=mia.headers())
    first = r.json()
    assert len(first["entries"]) == 1 and first["next_cursor"]
    r = await trading.http.get(
        "/api/v1/accounts/ledger", params={"limit": 1, "cursor": first["next_cursor"]}, headers=mia.headers()
    )
    second = r.json()
    assert len(second["entries"]) == 1 and second["next_cursor"] is None
    assert {first["entries"][0]["currency"], second["entries"][0]["currency"]} == {"GBP", "BTC"}
    for params, field in (
        ({"currency": "XYZ"}, "query.currency"),
        ({"currency": "gbp"}, "query.currency"),
        ({"cursor": "WyJ4Il0="}, "query.cursor"),  # base64 of ["x"]: well-formed, but not ours
        ({"cursor": "%%%"}, "query.cursor"),
        ({"limit": 1000}, "query.limit"),
    ):
        r = await trading.http.get("/api/v1/accounts/ledger", params=params, headers=mia.headers())
        problem = assert_problem(r, 422)
        assert field in [e["field"] for e in problem["errors"]], (params, problem)


async def test_authentication_is_required_and_email_verified(trading: Trading) -> None:
    for method, path in (
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders"),
        ("GET", f"/api/v1/orders/{uuid.uuid4()}"),
        ("POST", f"/api/v1/orders/{uuid.uuid4()}/cancel"),
        ("GET", "/api/v1/accounts/balances"),
        ("GET", "/api/v1/accounts/ledger"),
    ):
        r = await trading.http.request(method, path, json=BUY_1000 if method == "POST" else None)
        assert_problem(r, 401)
        r = await trading.http.request(method, path, headers={"Authorization": "Bearer not.a.jwt"})
        assert_problem(r, 401)
    unverified = await trading.customer(gbp="5000", verified=False)
    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=unverified.headers())
    assert_problem(r, 403, "email_not_verified")


async def test_an_order_whose_saga_cannot_start_is_undone_and_its_key_freed(trading: Trading) -> None:
    """The compensating step of `POST /orders`: Temporal refuses the start (here: a namespace it does not
    have), and says there is no such saga, so the PENDING row is deleted again and the key released; the
    customer's retry with the same key then places the order once."""
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    from api.routes.orders import order_sagas
    from temporal.order_sagas import TemporalOrderSagas

    judy = await trading.customer(gbp="5000")
    key = str(uuid.uuid4())
    nowhere = await Client.connect(
        trading.temporal.service_client.config.target_host,
        namespace=f"no-such-namespace-{uuid.uuid4().hex[:8]}",
        data_converter=pydantic_data_converter,
    )
    trading.app.dependency_overrides[order_sagas] = lambda: TemporalOrderSagas(nowhere, trading.task_queue)
    try:
        r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=judy.headers(key=key))
    finally:
        trading.app.dependency_overrides.pop(order_sagas)
    assert_problem(r, 503, "temporal_unavailable")
    assert int(r.headers["retry-after"]) > 0
    assert await trading.order_count(judy.id) == 0
    assert await idempotency_keys(trading, judy.id) == 0

    r = await trading.http.post("/api/v1/orders", json=BUY_1000, headers=judy.headers(key=key))
    assert r.status_code == 202, r.text
    assert (await trading.wait_order(judy, r.json()["id"]))["status"] == "FILLED"
    assert await trading.order_count(judy.id) == 1


async def test_enums_are_accepted_in_any_case_everywhere(trading: Trading) -> None:
    """One rule for enum inputs: `buy`, `Buy` and `BUY` are the same, in bodies and in query strings."""
    kate = await trading.customer(gbp="5000")
    body = {**BUY_1000, "side": "Buy", "type": "market"}
    r = await trading.http.post("/api/v1/orders", json=body, headers=kate.headers())
    assert r.status_code == 202, r.text
    order = await trading.wait_order(kate, r.json()["id"])
    assert order["side"] == "BUY" and order["type"] == "MARKET"  # answered in the one stored case
    for params in ({"side": "buy", "status": "filled"}, {"side": "BUY", "status": "FILLED"}):
        r = await trading.http.get("/api/v1/orders", params=params, headers=kate.headers())
        assert [o["id"] for o in r.json()["orders"]] == [order["id"]], params
    quotes = [
        await trading.http.get(
            "/api/v1/market/quote", params={"symbol": "BTC-GBP", "side": side, "amount": "0.01"}
        )
        for side in ("buy", "BUY")
    ]
    assert [q.status_code for q in quotes] == [200, 200], quotes[0].text
    assert quotes[0].json()["side"] == quotes[1].json()["side"] == "BUY"


async def test_one_place_for_balances_and_ledger_with_money_at_the_asset_scale(trading: Trading) -> None:
    """`/accounts/balances` and `/accounts/ledger` are the only balance and history endpoints; money is a
    string at its asset's scale everywhere (`"5000.00"`, `"0.00000000"`)."""
    leo = await trading.customer(gbp="5000")
    for gone in ("/api/v1/balances", "/api/v1/ledger"):
        assert_problem(await trading.http.get(gone, headers=leo.headers()), 404)
    balances = (await trading.http.get("/api/v1/accounts/balances", headers=leo.headers())).json()["balances"]
    assert {b["currency"]: b["balance"] for b in balances} == {
        "GBP": "5000.00",
        "BTC": "0.00000000",
        "ETH": "0.00000000",
        "BNB": "0.00000000",
    }
    entries = (await trading.http.get("/api/v1/accounts/ledger", headers=leo.headers())).json()["entries"]
    assert [(e["amount"], e["balance_after"]) for e in entries] == [("5000.00", "5000.00")]

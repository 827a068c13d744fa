"""Two API processes and two worker processes behave as one broker.

Customers trade and withdraw through both API processes at once (each customer's buy is sent twice with
one `Idempotency-Key`, once to each process, at the same moment) while one of the two worker processes
is SIGKILLed with sagas in flight; the survivor finishes them. Then the books are checked with the fault
test's checks (every order and withdrawal final and holding nothing, one venue order per client order
id, every venue fill booked, the ledger zero-sum, each customer's balance from the business records, each
venue's and the bank's movement against its house account) and, on top: every order filled, every
withdrawal completed and paid by the bank exactly once. Meanwhile two other customers find that the
per-user limit and the withdrawal limit count their requests to both processes together.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import text

from tests.faults.conftest import VENUES, Customer, FaultWorld
from tests.faults.test_money_under_faults import (
    BTC_BOOK,
    DEPOSIT_GBP,
    Run,
    _check,
    _confirm_bank_account,
    _customer_total,
    _fund,
    _rows,
    _settled,
    _status,
)
from tests.scale.conftest import USER_PER_MINUTE, ApiProcess

CUSTOMERS = 6
BUY_BTC, SELL_BTC, WITHDRAW_GBP = Decimal("0.004"), Decimal("0.001"), Decimal("150.00")
SETTLE_S = 120
WITHDRAWALS_PER_HOUR = 10  # the production limit; the API processes run with it


async def _post(
    world: FaultWorld, api: ApiProcess, customer: Customer, path: str, body: dict[str, Any], **kw: Any
) -> httpx.Response:
    headers = customer.headers(totp=bool(kw.pop("totp", False))) | kw.pop("headers", {})
    return await world.http.post(f"{api.url}/api/v1{path}", json=body, headers=headers)


async def _accepted(r: httpx.Response) -> uuid.UUID:
    assert r.status_code in (201, 202), r.text
    return uuid.UUID(r.json()["id"])


async def _trade_and_withdraw(
    world: FaultWorld,
    run: Run,
    customer: Customer,
    apis: tuple[ApiProcess, ApiProcess],
    bank_account: uuid.UUID,
    first_accepted: asyncio.Event,
    deadline: float,
) -> None:
    """A buy sent to both processes with one key, a GBP withdrawal to one of them at the same time; the
    sell once the buy is final, through the other process."""
    first, second = apis
    buy = {"symbol": "BTC-GBP", "side": "buy", "type": "market", "amount": str(BUY_BTC)}
    key = {"Idempotency-Key": f"buy-{uuid.uuid4()}"}
    withdrawal = {"currency": "GBP", "amount": str(WITHDRAW_GBP), "bank_account_id": str(bank_account)}
    buy_a, buy_b, withdrawn = await asyncio.gather(
        _post(world, first, customer, "/orders", buy, headers=key),
        _post(world, second, customer, "/orders", buy, headers=key),
        _post(world, second, customer, "/withdrawals", withdrawal, totp=True),
    )
    first_accepted.set()
    # The same key at the same moment through both processes: one order; the other process answers the
    # same order or "in flight" (409), never a second one.
    answers = [r for r in (buy_a, buy_b) if r.status_code != 409]
    assert answers, (buy_a.text, buy_b.text)
    order_ids = {await _accepted(r) for r in answers}
    assert len(order_ids) == 1, [r.text for r in answers]
    for r in (buy_a, buy_b):
        if r.status_code == 409:
            assert r.json()["code"] == "idempotency_in_flight", r.text
    order_id = order_ids.pop()
    run.orders.append(order_id)
    run.withdrawals.append(await _accepted(withdrawn))
    await _settled(world, "orders", order_id, deadline)
    replay = await _post(world, first, customer, "/orders", buy, headers=key)
    assert await _accepted(replay) == order_id and replay.headers.get("idempotent-replayed") == "true"
    sell = {"symbol": "BTC-GBP", "side": "sell", "type": "market", "amount": str(SELL_BTC)}
    run.orders.append(await _accepted(await _post(world, second, customer, "/orders", sell)))


async def _per_user_limit(world: FaultWorld, apis: tuple[ApiProcess, ApiProcess]) -> None:
    """`USER_PER_MINUTE` requests per customer in all, whichever process each one reaches."""
    customer = await world.customer()  # its 2FA enrolment and confirmation count: 2 requests
    answered: dict[str, Counter[int]] = {a.name: Counter() for a in apis}
    last: dict[str, httpx.Response] = {}
    for n in range(2 * USER_PER_MINUTE):
        api = apis[n % 2]
        r = await world.http.get(f"{api.url}/api/v1/accounts/balances", headers=customer.headers())
        answered[api.name][r.status_code] += 1
        last[api.name] = r
        if all(x.status_code == 429 for x in last.values()) and len(last) == 2:
            break
    allowed = sum(c[200] for c in answered.values())
    assert allowed == USER_PER_MINUTE - 2, answered  # one limit, not one per process
    assert all(c[200] > 0 for c in answered.values()), answered
    for r in last.values():
        assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
        assert 1 <= int(r.headers["retry-after"]) <= 61


async def _withdrawal_limit(world: FaultWorld, apis: tuple[ApiProcess, ApiProcess]) -> None:
    """10 withdrawal requests per hour per customer in all (counted before the second factor is
    checked, so these requests without a TOTP code are counted and refused with 403)."""
    customer = await world.customer()
    body = {"currency": "GBP", "amount": "10.00", "bank_account_id": str(uuid.uuid4())}
    for n in range(WITHDRAWALS_PER_HOUR):
        r = await _post(world, apis[n % 2], customer, "/withdrawals", body)
        assert r.status_code == 403 and r.json()["code"] == "totp_required", r.text
    for api in apis:
        r = await _post(world, api, customer, "/withdrawals", body)
        assert r.status_code == 429 and r.json()["code"] == "rate_limited", r.text
        assert 3000 < int(r.headers["retry-after"]) <= 3660
    async with world.engine.connect() as conn:
        written = text("SELECT count(*) FROM withdrawals WHERE user_id = :u")
        assert (await conn.execute(written, {"u": customer.id})).scalar_one() == 0


async def _ops_resolve_what_the_kill_left_unknown(
    world: FaultWorld, run: Run, api: ApiProcess, deadline: float
) -> None:
    """A withdrawal whose send died with the worker before it reached the bank waits in NEEDS_ATTENTION
    with its funds held (the saga never re-sends an unknown): ops check the bank, which has no such
    payout, and resolve it "not paid" through the admin API with their second factor. An order whose
    placement died likewise is resolved "absent" (the saga looks once more, then places again)."""
    waiting = [
        (table, i)
        for table, ids in (("orders", run.orders), ("withdrawals", run.withdrawals))
        for i in ids
        if await _status(world, table, i) == "NEEDS_ATTENTION"
    ]
    if not waiting:
        return
    ops = await world.customer()
    async with world.engine.begin() as conn:
        await conn.execute(text("UPDATE users SET roles = '{ops}' WHERE id = :u"), {"u": ops.id})
    for table, row_id in waiting:
        if table == "withdrawals":
            assert all(p.external_id != str(row_id) for p in world.bank_state.payouts.values())
            path = f"/admin/withdrawals/{row_id}/resolve"
            body: dict[str, Any] = {"paid": False, "reason": "the bank has no such payout"}
        else:
            cid = row_id.hex[:24]
            orders = [await world.venue_orders(v) for v in VENUES]
            assert not [o for found in orders for o in found if str(o.get("client_order_id", ""))[:24] == cid]
            path = f"/admin/orders/{row_id}/resolve-placement"
            body = {"absent": True, "note": "the venue has no such order"}
        r = await _post(world, api, ops, path, body, totp=True)
        assert r.status_code == 200, r.text
        loop = asyncio.get_running_loop()
        while await _status(world, table, row_id) == "NEEDS_ATTENTION":
            assert loop.time() < deadline, f"{table} {row_id} stayed NEEDS_ATTENTION after ops' word"
            await asyncio.sleep(0.2)
        await _settled(world, table, row_id, deadline)


async def test_orders_and_withdrawals_through_two_apis_complete_once_while_a_worker_is_killed(
    scaled: tuple[FaultWorld, list[ApiProcess]],
) -> None:
    world, (api_a, api_b) = scaled
    for venue in VENUES:
        await world.venue_control(venue, "walk", {"enabled": False})
        await world.venue_control(venue, "balances", {"GBP": "1000000", "BTC": "50", "ETH": "500"})
        await world.venue_control(venue, "book", {"symbol": "BTC-GBP", **BTC_BOOK[venue]})
        await world.venue_control(venue, "fees", {"taker": "0.001", "maker": "0.0008"})
    venue_start = {v: await world.venue_balances(v) for v in VENUES}

    run = Run(customers=[await world.customer() for _ in range(CUSTOMERS)])
    await asyncio.gather(*(_fund(world, c) for c in run.customers))
    loop = asyncio.get_running_loop()
    funded_by = loop.time() + 60
    while await _customer_total(world, run, "GBP") != DEPOSIT_GBP * CUSTOMERS:
        assert loop.time() < funded_by, "the customers' deposits were not credited"
        await asyncio.sleep(0.2)
    accounts = [await _confirm_bank_account(world, c) for c in run.customers]

    first_accepted = asyncio.Event()
    deadline = loop.time() + SETTLE_S

    async def kill_a_worker_mid_flight() -> None:
        await first_accepted.wait()
        await world.kill_worker(world.workers[0])

    pairs = [(api_a, api_b), (api_b, api_a)]
    await asyncio.gather(
        kill_a_worker_mid_flight(),
        _per_user_limit(world, (api_a, api_b)),
        _withdrawal_limit(world, (api_a, api_b)),
        *(
            _trade_and_withdraw(world, run, c, pairs[n % 2], a, first_accepted, deadline)
            for n, (c, a) in enumerate(zip(run.customers, accounts, strict=True))
        ),
    )
    for table, ids in (("orders", run.orders), ("withdrawals", run.withdrawals)):
        for row_id in ids:
            await _settled(world, table, row_id, deadline)
    assert world.workers[1].returncode is None  # the survivor did the rest
    # The kill mattered: sagas the killed worker had worked on were finished by the survivor.
    killed, survivor = (f'"{w.pid}@' for w in world.workers)
    both = 0
    for prefix, ids in (("order", run.orders), ("withdrawal", run.withdrawals)):
        for row_id in ids:
            history = await world.client.get_workflow_handle(f"{prefix}-{row_id}").fetch_history()
            seen = history.to_json()
            both += killed in seen and survivor in seen
    assert both > 0, "no saga was in flight on the killed worker"
    await _ops_resolve_what_the_kill_left_unknown(world, run, api_b, deadline + 60)
    await world.stop_workers()

    problems = await _check(world, run, venue_start)
    assert not problems, "\n".join(problems)
    statuses = Counter([await _status(world, "orders", i) for i in run.orders])
    assert statuses == {"FILLED": 2 * CUSTOMERS}, statuses
    payouts = Counter(p.external_id for p in world.bank_state.payouts.values())
    for w in run.withdrawals:  # paid exactly once, or (never sent, resolved by ops) never
        status = await _status(world, "withdrawals", w)
        assert (status, payouts[str(w)]) in (("COMPLETED", 1), ("FAILED", 0)), (w, status, payouts[str(w)])
    # Each customer's buy is one order, however many times and to however many processes it was sent.
    per_customer = await _rows(
        world, "SELECT user_id, side, count(*) FROM orders WHERE user_id = ANY(:u) GROUP BY 1, 2",
        u=[c.id for c in run.customers],
    )  # fmt: skip
    assert sorted(n for _, _, n in per_customer) == [1] * (2 * CUSTOMERS), per_customer

"""Every adapter operation through ccxt's real binance and kraken classes against the sandboxes (HTTP).

Each test runs once per venue (the `venue` fixture) on a freshly reset venue with its walk stopped,
so the numbers asserted are exact consequences of the book each test sets up.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from models.market import OrderType, PlaceOrderRequest, Side, VenueOrderStatus
from providers.exchanges.base import (
    ExecutionAdapter,
    InvalidVenueOrder,
    OrderNotFoundAtVenue,
    UnsupportedByVenue,
)
from providers.exchanges.ccxt_adapter import CcxtAdapter, client_order_id
from sandbox.control import STATE_KEY
from sandbox.runner import RunningSandboxes
from tests.providers.conftest import VenueControl

Venue = tuple[CcxtAdapter, VenueControl]
D = Decimal


def order(amount: str, side: Side = Side.BUY, **kw: object) -> PlaceOrderRequest:
    values: dict[str, object] = {
        "symbol": "BTC-GBP",
        "side": side,
        "type": OrderType.MARKET,
        "amount": D(amount),
        "client_order_id": client_order_id(uuid.uuid4(), 1),
    }
    values.update(kw)
    return PlaceOrderRequest.model_validate(values)


DEEP_BOOK = {
    "bids": [("67990", "1"), ("67980", "2")],
    "asks": [("68000", "0.1"), ("68010", "0.2"), ("68100", "5")],
}


# ------------------------------------------------------------------ client order ids


def test_client_order_id_is_pure_and_valid_at_both_venues() -> None:
    oid = uuid.UUID("6d1b345e-2821-40e2-ad83-4ecb18a06876")
    first = client_order_id(oid, 1)
    assert first == client_order_id(str(oid), 1)  # pure: a restarted worker recomputes the same id
    assert first == "6d1b345e282140e2ad834ecb00000001"
    assert client_order_id(oid, 2) != first  # a retry is a different order at the venue
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,36}", first)  # Binance newClientOrderId
    assert re.fullmatch(r"[0-9a-f]{32}", first)  # Kraken cl_ord_id, short-UUID form
    with pytest.raises(ValueError):
        client_order_id(oid, -1)
    with pytest.raises(ValueError):
        client_order_id("not-a-uuid", 1)


# ------------------------------------------------------------------ markets, rules, fees, books


async def test_adapter_satisfies_the_protocol(venue: Venue) -> None:
    adapter, _ = venue
    assert isinstance(adapter, ExecutionAdapter)


EXPECTED_RULES = {
    "binance": (D("0.00001"), D("0.01"), D("0.00001"), D("5")),
    "kraken": (D("0.00000001"), D("0.1"), D("0.00005"), D("0.5")),
}
EXPECTED_FEES = {"binance": (D("0.001"), D("0.0008")), "kraken": (D("0.0026"), D("0.0016"))}


async def test_load_reads_rules_and_fees_and_refreshes(venue: Venue) -> None:
    adapter, control = venue
    rules = adapter.rules("BTC-GBP")
    assert (rules.amount_step, rules.price_step, rules.min_amount, rules.min_notional) == EXPECTED_RULES[
        control.name
    ]
    fees = adapter.fees("BTC-GBP")
    assert (fees.taker, fees.maker) == EXPECTED_FEES[control.name]
    assert {"BTC-GBP", "ETH-GBP", "BNB-GBP"} <= set(adapter._rules)

    await control.post("fees", {"taker": "0.002", "maker": "0.001"})
    await adapter.load()  # refresh
    assert (adapter.fees("BTC-GBP").taker, adapter.fees("BTC-GBP").maker) == (D("0.002"), D("0.001"))


async def test_order_book_is_exact(venue: Venue) -> None:
    adapter, control = venue
    await control.book("ETH-GBP", [("2599.5", "1.25"), ("2599", "3")], [("2600.5", "0.75")])
    book = await adapter.order_book("ETH-GBP", depth=10)
    assert book.provider == control.name
    assert [(lv.price, lv.amount) for lv in book.bids] == [(D("2599.5"), D("1.25")), (D("2599"), D("3"))]
    assert [(lv.price, lv.amount) for lv in book.asks] == [(D("2600.5"), D("0.75"))]
    assert all(isinstance(lv.price, Decimal) for lv in book.bids + book.asks)


async def test_synthetic_book_is_realistic_and_thins_away_from_mid(venue: Venue) -> None:
    adapter, _ = venue
    book = await adapter.order_book("BTC-GBP", depth=20)
    best_bid, best_ask = book.bids[0].price, book.asks[0].price
    assert D("60000") < best_bid < best_ask < D("76000")
    assert (best_ask - best_bid) / best_bid < D("0.001")
    assert book.asks[0].amount > book.asks[5].amount > book.asks[10].amount  # depth thins


# ------------------------------------------------------------------ placing


async def test_market_buy_walks_the_book(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **DEEP_BOOK)
    before = await control.balances()
    req = order("0.25")
    placed = await adapter.place_order(req)

    assert placed.status is VenueOrderStatus.FILLED
    assert placed.client_order_id == req.client_order_id
    assert placed.filled == D("0.25")
    assert placed.quote_filled == D("0.1") * 68000 + D("0.15") * 68010  # size moved the price
    assert placed.average_price == placed.quote_filled / D("0.25")
    after = await control.balances()
    if control.name == "binance":  # commission in the asset received, per fill
        assert placed.fee == D("0.00025") and placed.fee_currency == "BTC"
        assert [(f.price, f.amount) for f in placed.fills] == [(D(68000), D("0.1")), (D(68010), D("0.15"))]
        assert after["BTC"]["free"] - before["BTC"]["free"] == D("0.25") - D("0.00025")
        assert before["GBP"]["free"] - after["GBP"]["free"] == placed.quote_filled
    else:  # Kraken: fee in the quote currency
        assert placed.fee == placed.quote_filled * D("0.0026") and placed.fee_currency == "GBP"
        assert before["GBP"]["free"] - after["GBP"]["free"] == placed.quote_filled + placed.fee
    orders = await control.orders()
    assert [o["client_order_id"] for o in orders] == [req.client_order_id]


async def test_market_sell(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **DEEP_BOOK)
    placed = await adapter.place_order(order("1.5", side=Side.SELL))
    assert placed.status is VenueOrderStatus.FILLED
    assert placed.quote_filled == 67990 + D("0.5") * 67980
    assert placed.fee_currency == "GBP"


async def test_protective_ioc_fills_what_the_limit_allows_and_expires_the_rest(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", [("67990", "1")], [("68000", "0.1"), ("68100", "1")])
    placed = await adapter.place_order(order("0.5", price=D("68050")))
    assert placed.filled == D("0.1")
    assert placed.quote_filled == D("6800")
    assert placed.status is VenueOrderStatus.CANCELLED  # IOC remainder expired
    [at_venue] = await control.orders()
    assert at_venue["time_in_force"] == "IOC" and at_venue["type"] == "limit" and at_venue["price"] == "68050"


async def test_limit_rests_then_fills_as_maker_when_the_price_crosses(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", [("67900", "1")], [("68000", "1")])
    placed = await adapter.place_order(order("0.01", type=OrderType.LIMIT, price=D("67950")))
    assert placed.status is VenueOrderStatus.OPEN and placed.filled == 0
    status = await adapter.order_status("BTC-GBP", placed.provider_order_id)
    assert status.status is VenueOrderStatus.OPEN

    await control.book("BTC-GBP", [("67800", "1")], [("67940", "1")])  # the market falls through our bid
    filled = await adapter.order_status("BTC-GBP", placed.provider_order_id)
    assert filled.status is VenueOrderStatus.FILLED
    assert filled.average_price == D("67950")  # a maker trades at its own price
    maker_fee = D("0.01") * D("0.0008") if control.name == "binance" else D("679.5") * D("0.0016")
    assert filled.fee == maker_fee


async def test_cancel_open_order_and_cancel_of_a_filled_one(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **DEEP_BOOK)
    resting = await adapter.place_order(order("0.01", type=OrderType.LIMIT, price=D("60000")))
    assert (await control.balances())["GBP"]["used"] > 0
    cancelled = await adapter.cancel_order("BTC-GBP", resting.provider_order_id)
    assert cancelled.status is VenueOrderStatus.CANCELLED
    assert (await control.balances())["GBP"]["used"] == 0  # hold released

    done = await adapter.place_order(order("0.01"))
    again = await adapter.cancel_order("BTC-GBP", done.provider_order_id)
    assert again.status is VenueOrderStatus.FILLED and again.filled == D("0.01")


async def test_status_of_an_unknown_order_is_not_found(venue: Venue) -> None:
    adapter, control = venue
    unknown = "999999" if control.name == "binance" else "OAAAAA-BBBBB-CCCCCC"
    with pytest.raises(OrderNotFoundAtVenue):
        await adapter.order_status("BTC-GBP", unknown)


ROUNDING = {
    "binance": ("0.012345678", D("0.01234"), D("0.000005678")),
    "kraken": ("0.0123456789", D("0.01234567"), D("0.0000000089")),
}


async def test_amounts_round_down_to_the_lot_and_report_the_remainder(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **DEEP_BOOK)
    asked, sent, remainder = ROUNDING[control.name]
    placed = await adapter.place_order(order(asked))
    assert placed.amount == sent and placed.filled == sent
    assert placed.unplaced_amount == remainder
    [at_venue] = await control.orders()
    assert D(at_venue["amount"]) == sent


async def test_below_minimum_is_refused_before_anything_is_sent(venue: Venue) -> None:
    adapter, control = venue
    tiny = "0.000009" if control.name == "binance" else "0.00004"
    with pytest.raises(InvalidVenueOrder):
        await adapter.place_order(order(tiny))
    assert await control.orders() == []
    assert not any(c.startswith("POST") and "rder" in c for c in await control.calls())


async def test_protective_price_rounds_towards_the_customer(venue: Venue) -> None:
    adapter, control = venue
    assert adapter.round_price("BTC-GBP", D("68000.07"), Side.BUY) <= D("68000.07")
    assert adapter.round_price("BTC-GBP", D("68000.07"), Side.SELL) >= D("68000.07")
    if control.name == "kraken":
        assert adapter.round_price("BTC-GBP", D("68000.07"), Side.BUY) == D("68000.0")
        assert adapter.round_price("BTC-GBP", D("68000.07"), Side.SELL) == D("68000.1")


# ------------------------------------------------------------------ balances and custody


async def test_balance_free_used_total(venue: Venue) -> None:
    adapter, control = venue
    await control.set_balances(GBP="12345.67", BTC="1.5")
    gbp = await adapter.balance("GBP")
    assert (gbp.free, gbp.used, gbp.total) == (D("12345.67"), 0, D("12345.67"))
    await control.book("BTC-GBP", **DEEP_BOOK)
    await adapter.place_order(order("0.01", type=OrderType.LIMIT, price=D("60000")))
    gbp = await adapter.balance("GBP")
    hold = D("600") if control.name == "binance" else D("600") * D("1.0016")  # Kraken holds the maker fee too
    assert gbp.used == hold
    assert gbp.free == D("12345.67") - hold and gbp.total == D("12345.67")


async def test_deposit_address_and_deposits_with_confirmations(venue: Venue) -> None:
    adapter, control = venue
    address = await adapter.deposit_address("BTC")
    assert address.address and (await adapter.deposit_address("BTC")).address == address.address
    before = await adapter.balance("BTC")

    dep = await control.post("deposits", {"asset": "BTC", "amount": "0.5", "confirmations": 0})
    [pending] = await adapter.deposits("BTC")
    assert pending.status == "pending" and pending.confirmations == 0
    assert pending.amount == D("0.5") and pending.tx_id == dep["tx_id"] and pending.address == address.address
    assert (await adapter.balance("BTC")).free == before.free  # not credited yet

    await control.post(f"deposits/{dep['id']}/confirm", {})
    [done] = await adapter.deposits("BTC")
    assert done.status == "ok" and done.confirmations == 2
    assert (await adapter.balance("BTC")).free == before.free + D("0.5")
    assert await adapter.deposits("ETH") == []


async def test_new_deposit_address_is_minted_per_call_at_kraken_and_refused_at_binance(venue: Venue) -> None:
    adapter, control = venue
    if control.name == "binance":  # one address per coin per account: never a silently shared one
        with pytest.raises(UnsupportedByVenue):
            await adapter.deposit_address("BTC", new=True)
        return
    default = (await adapter.deposit_address("BTC")).address
    first, second = [(await adapter.deposit_address("BTC", new=True)).address for _ in range(2)]
    assert len({default, first, second}) == 3
    assert (await adapter.deposit_address("BTC")).address == default  # the default stays put
    assert (await control.calls()).count("POST /0/private/DepositAddresses") == 4
    before = await adapter.balance("BTC")
    dep = await control.post(
        "deposits", {"asset": "BTC", "amount": "0.2", "confirmations": 2, "address": second}
    )
    assert dep["address"] == second
    [seen] = await adapter.deposits("BTC")
    assert seen.address == second and seen.status == "ok" and seen.tx_id == dep["tx_id"]
    assert (await adapter.balance("BTC")).free == before.free + D("0.2")  # every address is the omnibus's
    r = await control.http.post(
        f"{control.url}/_control/deposits", json={"asset": "BTC", "amount": "1", "address": "bc1qnotours"}
    )
    assert r.status_code == 400 and r.json()["error"] == "unknown_address"
    r = await control.http.post(
        f"{control.url}/_control/deposits", json={"asset": "ETH", "amount": "1", "address": first}
    )
    assert r.status_code == 400  # a BTC address does not take ETH


async def test_withdrawal_status_by_client_id(venue: Venue) -> None:
    adapter, control = venue
    await control.set_balances(BTC="1")
    if control.name == "kraken":  # Kraken keeps no client id for withdrawals: by its refid below
        with pytest.raises(UnsupportedByVenue):
            await adapter.withdrawal_status("BTC", "wd-x")
        return
    assert await adapter.withdrawal_status("BTC", "wd-missing") is None
    sent = await adapter.withdraw("BTC", D("0.1"), "bc1qdestination000000000000000000", client_id="wd-7")
    await adapter.withdraw("BTC", D("0.2"), "bc1qdestination000000000000000000", client_id="wd-8")
    found = await adapter.withdrawal_status("BTC", "wd-7")
    assert found is not None and found.withdrawal_id == sent.withdrawal_id
    assert found.amount == D("0.1") and found.status == "ok" and found.tx_hash
    assert found.address == "bc1qdestination000000000000000000"
    assert await adapter.withdrawal_status("ETH", "wd-7") is None


async def test_a_kraken_withdrawal_is_found_by_the_refid_its_send_answered_with(
    venue: Venue, sandboxes: RunningSandboxes
) -> None:
    """Kraken keeps no id of ours: the `refid` from Withdraw's answer finds it in WithdrawStatus (Kraken's
    real shape: refid, txid, fee, status), through every cursor page; without a refid it stays unknown."""
    adapter, control = venue
    if control.name != "kraken":
        return
    assert adapter.withdrawals.lookup_by == "venue_ref"
    await control.set_balances(BTC="5")
    state = sandboxes.apps["kraken"][STATE_KEY]
    ours = await adapter.withdraw("BTC", D("0.1"), "bc1qdestination000000000000000000", client_id="wd-k")
    assert re.fullmatch(r"A[0-9A-Z]{6}-[0-9A-Z]{6}-[0-9A-Z]{6}", ours.withdrawal_id), ours
    for _ in range(5):  # newer withdrawals push ours to the third page
        await adapter.withdraw("BTC", D("0.01"), "bc1qdestination000000000000000000", client_id="other")
    state.venue.config.history_page_size = 2
    try:
        found = await adapter.withdrawal_status("BTC", "wd-k", venue_ref=ours.withdrawal_id)
        assert found is not None and found.withdrawal_id == ours.withdrawal_id
        assert found.status == "ok" and found.tx_hash and found.amount == D("0.1")
        assert found.fee == state.venue.config.withdrawal_fees["BTC"]
        assert found.address == "bc1qdestination000000000000000000"
        since = datetime.now(UTC) - timedelta(minutes=5)
        assert await adapter.withdrawal_status("BTC", "wd-k", since=since, venue_ref=ours.withdrawal_id)
        assert await adapter.withdrawal_status("BTC", "wd-k", venue_ref="AAAAAAA-BBBBBB-CCCCCC") is None
        assert await adapter.withdrawal_status("ETH", "wd-k", venue_ref=ours.withdrawal_id) is None
        with pytest.raises(UnsupportedByVenue):  # the send's answer was lost: nothing to ask by
            await adapter.withdrawal_status("BTC", "wd-k")
        calls = await control.calls()
        assert calls.count("POST /0/private/WithdrawStatus") >= 3  # paged, not one long answer
    finally:
        state.venue.config.history_page_size = 1000


async def test_withdrawal_status_reads_every_page_of_the_history(
    venue: Venue, sandboxes: RunningSandboxes
) -> None:
    """An older withdrawal that fell off the first page of the venue's history is still found (it was
    reported missing, read as a failed payout and paid twice). Binance serves newest first, in pages."""
    adapter, control = venue
    if control.name != "binance":
        return
    await control.set_balances(BTC="5")
    state = sandboxes.apps["binance"][STATE_KEY]
    ours = await adapter.withdraw("BTC", D("0.1"), "bc1qdestination000000000000000000", client_id="wd-old")
    for i in range(5):  # newer withdrawals (other customers) push ours to the third page
        await adapter.withdraw("BTC", D("0.01"), "bc1qdestination000000000000000000", client_id=f"wd-n{i}")
    state.venue.config.history_page_size = 2
    try:
        found = await adapter.withdrawal_status("BTC", "wd-old")
        assert found is not None and found.withdrawal_id == ours.withdrawal_id
        assert found.fee == D("0.0001")  # the network fee the venue took from our omnibus
        assert await adapter.withdrawal_status("BTC", "wd-never-sent") is None
        found = await adapter.withdrawal_status(
            "BTC", "wd-old", since=datetime.now(UTC) - timedelta(minutes=5)
        )
        assert found is not None and found.withdrawal_id == ours.withdrawal_id
    finally:
        state.venue.config.history_page_size = 1000


async def test_withdraw(venue: Venue) -> None:
    adapter, control = venue
    await control.set_balances(BTC="1")
    w = await adapter.withdraw("BTC", D("0.1"), "bc1qdestination000000000000000000", client_id="wd-1")
    assert w.withdrawal_id and w.amount == D("0.1") and w.currency == "BTC"
    balances = await control.balances()
    assert balances["BTC"]["free"] == D("1") - D("0.1") - D("0.0001")  # amount + the network fee


async def test_concurrent_private_calls_do_not_trip_the_nonce(venue: Venue) -> None:
    adapter, control = venue
    await control.book("BTC-GBP", **DEEP_BOOK)
    placed = await adapter.place_order(order("0.01"))
    # The first request is held up on its way in, so later ones (with higher nonces) overtake it: without
    # the adapter serialising its Kraken calls, the venue would refuse the first as a stale nonce.
    await control.fault("latency", latency_ms=150, count=1, paths=["/0/private/BalanceEx", "/api/v3/account"])
    results = await asyncio.gather(
        *[adapter.balance("GBP") for _ in range(6)],
        *[adapter.order_status("BTC-GBP", placed.provider_order_id) for _ in range(6)],
    )
    assert len(results) == 12

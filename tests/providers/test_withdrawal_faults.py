"""The sandbox venues' withdrawal faults, in each venue's own protocol as ccxt reads it: a withdrawal that
is accepted and then fails on the venue's side (funds come back), and a withdrawal history that does not
show a new withdrawal for a few reads."""

from __future__ import annotations

import uuid
from decimal import Decimal

from tests.providers.test_faults import Venue

D = Decimal


async def _free(venue: Venue, asset: str) -> Decimal:
    return (await venue[1].balances())[asset]["free"]


async def test_a_withdrawal_accepted_then_failed_shows_failure_and_the_funds_come_back(venue: Venue) -> None:
    adapter, control = venue
    await control.set_balances(BTC="1")
    await control.fault("withdrawal_fail", count=1)
    address = "bc1q" + uuid.uuid4().hex
    client_id = uuid.uuid4().hex
    sent = await adapter.withdraw("BTC", D("0.1"), address, client_id)
    assert sent.withdrawal_id
    assert await _free(venue, "BTC") == D("1")  # nothing left the venue
    rows = await adapter.exchange.fetch_withdrawals("BTC")
    assert [r["status"] for r in rows] == ["failed"]
    if control.name == "binance":
        looked_up = await adapter.withdrawal_status("BTC", client_id)
        assert looked_up is not None and looked_up.status == "failed"
    # The next one goes through.
    await adapter.withdraw("BTC", D("0.1"), address, uuid.uuid4().hex)
    assert await _free(venue, "BTC") < D("0.9")


async def test_a_new_withdrawal_is_missing_from_a_lagging_history_for_a_few_reads(venue: Venue) -> None:
    adapter, control = venue
    await control.set_balances(BTC="1")
    await control.fault("not_found_lag", lookups=2, count=1, paths=["withdraw/apply", "private/Withdraw"])
    await adapter.withdraw("BTC", D("0.1"), "bc1q" + uuid.uuid4().hex, uuid.uuid4().hex)
    seen = [len(await adapter.exchange.fetch_withdrawals("BTC")) for _ in range(3)]
    assert seen == [0, 0, 1]

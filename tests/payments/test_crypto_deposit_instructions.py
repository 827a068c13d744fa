"""Deposit instructions for every crypto we list: the deposit provider (Kraken) mints each customer an address
for each asset through ccxt's own method names, ETH included (ccxt asks Kraken for "Ether (Hex)")."""

from __future__ import annotations

import pytest

from tests.payments.conftest import Stack, make_user


@pytest.mark.parametrize("currency", ["BTC", "ETH", "BNB"])
async def test_each_listed_crypto_has_deposit_instructions_with_the_customers_own_address(
    stack: Stack, currency: str
) -> None:
    alice, bob = await make_user(stack), await make_user(stack)
    addresses = []
    async with stack.http() as c:
        for customer in (alice, bob):
            r = await c.get(
                "/api/v1/deposits/instructions", params={"currency": currency}, headers=customer.headers()
            )
            assert r.status_code == 200, r.text
            assert r.json()["currency"] == currency
            addresses.append(r.json()["address"])
    assert addresses[0] and addresses[1] and addresses[0] != addresses[1]

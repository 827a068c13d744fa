"""A crypto withdrawal to a listed wallet is refused before any money moves: the customer is told nothing
of why, compliance gets an `aml_checks` row and ops an alert."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest_asyncio
from sqlalchemy import text

from config import Settings
from models.screening import ListSource
from services import payments
from services.ledger import Ledger
from services.screening.loaders import load_ofac_sdn
from services.screening.sources import resolve_data_dir
from services.screening.store import load_list
from tests.payments.conftest import Customer, Stack, balance, make_user

LISTED_BTC = (
    "12udabs2TkX7NXCSj6KpqXfakjE52ZPLhz"  # OFAC SDN (crypto sample): "Digital Currency Address - XBT"
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def listed_wallets_loaded(stack: Stack) -> None:
    """The OFAC sample with wallet addresses, loaded into the payments database (idempotent)."""
    data_dir = resolve_data_dir(Settings(environment="test").sanctions_data_dir)
    await load_list(stack.engine, ListSource.OFAC_SDN, load_ofac_sdn(Path(data_dir) / "ofac-crypto-sample"))


async def _btc_customer_with_address(stack: Stack, address: str) -> tuple[Customer, str]:
    customer = await make_user(stack)
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/withdrawal-addresses",
            json={"currency": "BTC", "address": address, "label": "mine"},
            headers=customer.headers(totp=True),
        )
        assert r.status_code == 201, r.text
        address_id = r.json()["id"]
    deposit_address = "dep-" + uuid.uuid4().hex
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE withdrawal_addresses SET usable_from = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - timedelta(minutes=1), "id": address_id},
        )
        await conn.execute(
            text(
                "INSERT INTO crypto_deposit_addresses (id, user_id, provider, currency, address) "
                "VALUES (:id, :u, 'binance', 'BTC', :a)"
            ),
            {"id": uuid.uuid4(), "u": customer.id, "a": deposit_address},
        )
    await payments.credit_crypto_deposit(
        stack.engine, Ledger(stack.engine), provider="binance", tx_id=uuid.uuid4().hex,
        currency="BTC", amount=Decimal("0.01"), address=deposit_address, confirmations=6,
    )  # fmt: skip
    return customer, address_id


async def test_a_withdrawal_to_a_listed_wallet_is_refused_neutrally_with_a_check_and_an_alert(
    stack: Stack, listed_wallets_loaded: None
) -> None:
    customer, address_id = await _btc_customer_with_address(stack, LISTED_BTC)
    body = {"currency": "BTC", "amount": "0.005", "address_id": address_id}
    for _ in range(2):  # a retried request is refused again and recorded once
        async with stack.http() as c:
            r = await c.post("/api/v1/withdrawals", json=body, headers=customer.headers(totp=True))
        assert r.status_code == 422, r.text
        problem = r.json()
        assert problem["code"] == "withdrawal_refused"
        words = r.text.lower()
        assert not any(w in words for w in ("sanction", "ofac", "listed", "aml", "screen")), r.text

    assert await balance(stack, customer.id, "BTC") == (Decimal("0.01"), Decimal(0))  # nothing held
    async with stack.engine.connect() as conn:
        withdrawals = (
            await conn.execute(
                text("SELECT count(*) FROM withdrawals WHERE user_id = :u"), {"u": customer.id}
            )
        ).scalar_one()
        checks = (
            await conn.execute(
                text("SELECT check_type, result, details FROM aml_checks WHERE user_id = :u"),
                {"u": customer.id},
            )
        ).all()
        alerts = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE action = 'ops.alert.listed_wallet_destination' "
                    "AND target_id = :u"
                ),
                {"u": str(customer.id)},
            )
        ).scalar_one()
    assert withdrawals == 0
    assert len(checks) == 2  # one per request: each request has its own id
    assert {(c.check_type, c.result) for c in checks} == {("WALLET", "HIT")}
    assert checks[0].details["address"] == LISTED_BTC
    assert checks[0].details["listings"][0]["source_id"]
    assert alerts == 2


async def test_a_withdrawal_to_an_unlisted_wallet_is_not_screened_out(
    stack: Stack, listed_wallets_loaded: None
) -> None:
    customer, address_id = await _btc_customer_with_address(stack, "bc1q" + uuid.uuid4().hex)
    async with stack.http() as c:
        r = await c.post(
            "/api/v1/withdrawals",
            json={"currency": "BTC", "amount": "0.005", "address_id": address_id},
            headers=customer.headers(totp=True),
        )
    assert r.status_code == 201, r.text
    async with stack.engine.connect() as conn:
        checks = (
            await conn.execute(text("SELECT count(*) FROM aml_checks WHERE user_id = :u"), {"u": customer.id})
        ).scalar_one()
    assert checks == 0

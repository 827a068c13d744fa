"""The payer name of a credited bank deposit is screened after the credit: a possible match raises a
compliance review and never blocks, delays or reverses the money; each deposit is checked once."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlalchemy import text

from config import Settings
from models.screening import ListSource
from services.screening.loaders import load_ofac_sdn
from services.screening.sources import resolve_data_dir
from services.screening.store import load_list
from tests.payments.conftest import Customer, Stack, balance, make_user, wait_for


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sample_list_loaded(stack: Stack) -> None:
    """The OFAC crypto sample (17 listings), loaded into the payments database (idempotent)."""
    data_dir = resolve_data_dir(Settings(environment="test").sanctions_data_dir)
    await load_list(stack.engine, ListSource.OFAC_SDN, load_ofac_sdn(Path(data_dir) / "ofac-crypto-sample"))


async def _pay_in(stack: Stack, customer: Customer, amount: str, payer_name: str) -> dict[str, Any]:
    async with stack.http() as c:
        r = await c.get(
            "/api/v1/deposits/instructions", params={"currency": "GBP"}, headers=customer.headers()
        )
        reference = r.json()["reference"]
    sent: dict[str, Any] = await stack.bank(
        "POST",
        "/_control/payments",
        json={"reference": reference, "amount": amount, "payer_name": payer_name},
    )
    return sent


async def _payer_checks(stack: Stack, customer: Customer) -> Any:
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT result, risk_score, details FROM aml_checks "
                    "WHERE user_id = :u AND check_type = 'PAYER_NAME'"
                ),
                {"u": customer.id},
            )
        ).all()


async def test_a_listed_payer_name_is_credited_and_raises_a_review(
    stack: Stack, sample_list_loaded: None
) -> None:
    customer = await make_user(stack)
    sent = await _pay_in(stack, customer, "250.00", "Dmitry Yuryevich Khoroshev")

    async def checked() -> Any:
        return await _payer_checks(stack, customer)

    checks = await wait_for(checked, timeout=90)  # the first screening in a process loads rigour's name data
    assert await balance(stack, customer.id, "GBP") == (Decimal("250.00"), Decimal(0))  # credited, not held
    assert len(checks) == 1
    result, score, details = checks[0]
    assert result == "HIT" and score >= 80 and details["action"] == "REVIEW"
    assert details["payer_name"] == "Dmitry Yuryevich Khoroshev"
    assert details["matches"][0]["primary_name"] == "KHOROSHEV, Dmitry Yuryevich"
    async with stack.engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM users WHERE id = :u"), {"u": customer.id})
        ).scalar()
        reviews = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE action = 'compliance.review.payer_name' "
                    "AND target_id = :u"
                ),
                {"u": str(customer.id)},
            )
        ).scalar_one()
    assert status == "ACTIVE" and reviews == 1  # a review, never a freeze or a block

    # The bank delivers the same payment again: one credit, one check.
    await stack.bank("POST", f"/_control/webhooks/{sent['delivery_id']}/redeliver")
    await stack.bank("POST", f"/_control/webhooks/{sent['delivery_id']}/redeliver")
    assert await balance(stack, customer.id, "GBP") == (Decimal("250.00"), Decimal(0))
    assert len(await _payer_checks(stack, customer)) == 1


async def test_an_ordinary_payer_name_is_recorded_clear(stack: Stack, sample_list_loaded: None) -> None:
    customer = await make_user(stack)
    await _pay_in(stack, customer, "40.00", "A Customer")

    async def checked() -> Any:
        return await _payer_checks(stack, customer)

    (result, score, details), *more = await wait_for(
        checked, timeout=90
    )  # the first screening in a process loads rigour's name data
    assert (result, score, details["action"], more) == ("CLEAR", 0, "CLEAR", [])
    assert await balance(stack, customer.id, "GBP") == (Decimal("40.00"), Decimal(0))

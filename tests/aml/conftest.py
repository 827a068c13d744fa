"""The AML test stack: the payments stack (tests/payments/conftest.py: sandbox bank and venues, mail sink,
the real API, workers on the payments and ops queues, which run the SAR workflow), started once for the
package, plus a worker on the orders queue (a frozen customer's order is refused at its saga's accept
step), the OFAC sample list loaded for screening, and helpers that open a case the way monitoring does
(`services/aml/alerts.record_alerts`)."""

# ruff: noqa: F811  (helpers take the imported `stack` fixture's name as a parameter)
from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.worker import Worker

from config import Settings
from models.aml import AmlRuleVersion, RuleHit
from models.screening import ListSource, Subject
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from services.screening.loaders import load_ofac_sdn
from services.screening.screener import Bands, find_matches
from services.screening.sources import resolve_data_dir
from services.screening.store import load_list
from temporal import task_queues
from tests.payments.conftest import (  # noqa: F401  (the payments stack's fixtures: this package gets its own)
    Customer,
    Stack,
    ledger_invariants,
    make_user,
    stack,
)
from workers.registry import Dependencies, build

# Words a customer must never see about a case (no tipping off).
AML_WORDS = (
    "aml", "suspicious", "sanction", "ofac", "screen", "freeze", "frozen", "compliance", "sar", "nca",
)  # fmt: skip


def tipping_off(text: str) -> list[str]:
    """The AML words in `text` (whole words, any case); empty when the customer may see it."""
    import re

    words = set(re.findall(r"[a-z]+", text.lower()))
    return [w for w in AML_WORDS if w in words]


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def orders_worker(stack: Stack) -> AsyncIterator[None]:
    """A worker on the orders queue (its adapters pointed at the stack's sandboxes)."""
    s = stack.settings
    adapters = {
        "binance": CcxtAdapter(
            ExchangeConfig(
                name="binance", exchange_id="binance", api_key=s.binance_api_key, secret=s.binance_secret,
                base_url=stack.binance_url,
            )
        ),
        "kraken": CcxtAdapter(
            ExchangeConfig(
                name="kraken", exchange_id="kraken", api_key=s.kraken_api_key, secret=s.kraken_secret,
                base_url=stack.kraken_url,
            )
        ),
    }  # fmt: skip
    spec = build(Dependencies(settings=s, engine=stack.engine, adapters=dict(adapters), send_email=False))[
        task_queues.ORDERS
    ]
    worker = Worker(
        stack.client,
        task_queue=task_queues.ORDERS,
        workflows=list(spec.workflows),
        activities=list(spec.activities),
    )
    run = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        await worker.shutdown()
        await asyncio.gather(run, return_exceptions=True)
        for a in adapters.values():
            await a.close()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def sample_list_loaded(stack: Stack) -> None:
    """The OFAC crypto sample loaded, and one screening done (the first in a process loads rigour's name
    data, which would otherwise take a request's time)."""
    data_dir = resolve_data_dir(Settings(environment="test").sanctions_data_dir)
    await load_list(stack.engine, ListSource.OFAC_SDN, load_ofac_sdn(Path(data_dir) / "ofac-crypto-sample"))
    # A name with candidates: scoring them is what loads the name data (tens of seconds on a busy machine).
    await find_matches(
        stack.engine, [Subject(name="Dmitry Khoroshev")], Bands(review=80, freeze=95), per_name=5
    )


async def live_rule_version(stack: Stack) -> AmlRuleVersion:
    """The published live rule set version (the seed in config/aml/, loaded by the migrations)."""
    async with AsyncSession(stack.engine, expire_on_commit=False) as session:
        version = (
            await session.exec(
                select(AmlRuleVersion)
                .where(col(AmlRuleVersion.status) == "published", col(AmlRuleVersion.mode) == "live")
                .order_by(col(AmlRuleVersion.published_at))
                .limit(1)
            )
        ).one()
        return version


async def open_case(
    stack: Stack, user_id: uuid.UUID, *, subject_type: str = "customer", subject_id: str | None = None
) -> uuid.UUID:
    """A case for the customer, opened by a live alert as monitoring opens it."""
    from services.aml.alerts import record_alerts

    version = await live_rule_version(stack)
    async with AsyncSession(stack.engine, expire_on_commit=False) as session:
        case = await record_alerts(
            session,
            user_id=user_id,
            subject_type=subject_type,
            subject_id=subject_id or str(user_id),
            hits=[RuleHit(rule_code="value_24h", score=30, details={"total_gbp": "12000.00"})],
            rule_version=version,
        )
        await session.commit()
    assert case is not None
    return case.id


async def staff(stack: Stack, *roles: str) -> Customer:
    return await make_user(stack, roles=list(roles or ("compliance",)))


async def mails_to(stack: Stack, email: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.mail_url, timeout=10) as c:
        r = await c.get("/messages", params={"to": email})
        r.raise_for_status()
        messages: list[dict[str, Any]] = r.json()
        return messages

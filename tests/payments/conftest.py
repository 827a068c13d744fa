"""The payments test stack, started once per session in the test loop:

- the sandbox bank and the Binance and Kraken sandboxes (in-process aiohttp apps on free ports), and a
  mail sink (crypto is withdrawn through Binance and deposited through Kraken, as configured by default);
- the real API served by uvicorn on a free port, so the bank's signed webhooks arrive over HTTP;
- one Temporal worker on the payments and ops queues, built by `workers.registry.build` with its
  bank, adapters and email injected (pointed at the sandboxes above).

Each test makes its own customers (fresh ids), so tests don't depend on each other. After every test the
ledger invariants are checked (`verify()` ok, every currency's customer + house total zero).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pyotp
import pytest
import pytest_asyncio
import uvicorn
from aiohttp import web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from config.settings import DEV_SECRETS
from devstack.ports import free_port
from models.sealed import seal
from providers.bank import BankClient
from providers.email import EmailSender
from providers.exchanges.ccxt_adapter import CcxtAdapter, ExchangeConfig
from sandbox.bank import STATE as BANK_STATE
from sandbox.bank import BankState
from sandbox.bank import create_app as create_bank_app
from sandbox.mail import create_app as create_mail_app
from sandbox.runner import serve, start_venues
from services.ledger import Ledger
from services.passwords import hash_password
from temporal import task_queues
from tests import totp_codes
from workers.registry import Dependencies, build

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
PASSWORD = "Correct-Horse-9-battery"


@dataclass
class Stack:
    settings: Settings
    api_url: str
    bank_url: str
    binance_url: str
    kraken_url: str
    mail_url: str
    bank_state: BankState
    binance_app: web.Application
    engine: AsyncEngine
    client: Client
    kraken_app: web.Application | None = None

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.api_url, timeout=30)

    async def bank(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.bank_url, timeout=30) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json()

    async def binance(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.binance_url, timeout=30) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json()

    async def kraken(self, method: str, path: str, **kw: Any) -> Any:
        async with httpx.AsyncClient(base_url=self.kraken_url, timeout=30) as c:
            r = await c.request(method, path, **kw)
            r.raise_for_status()
            return r.json()


# Package scope: its workers poll the real payments and ops task queues of the session's Temporal, and
# the core SDK allows one worker per queue in a process; other packages (reconciliation's float
# transfers) start their own on those queues once this stack is gone.
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def stack(
    settings: Settings, engine: AsyncEngine, temporal_client: Client, temporal_address: str
) -> AsyncIterator[Stack]:
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    mail_runner, mail_port = await serve(create_mail_app(settings.sendgrid_api_key), "127.0.0.1", 0)
    bank_app = create_bank_app(
        DEV_SECRETS["bank_api_key"],
        webhook_secret=settings.bank_webhook_secret,
        webhook_url=f"{api_url}/api/v1/webhooks/bank",
    )
    bank_runner, bank_port = await serve(bank_app, "127.0.0.1", 0)
    venues = await start_venues(["binance", "kraken"])
    s = settings.model_copy(
        update={
            "bank_url": f"http://127.0.0.1:{bank_port}",
            "binance_url": venues.urls["binance"],
            "kraken_url": venues.urls["kraken"],
            "crypto_provider": "binance",
            "crypto_deposit_provider": "kraken",
            # A Pro key (Kraken's counters still on): a Starter key's budget, shared by the whole package's
            # stack, made every crypto-deposit test wait out the calls of the tests before it.
            "kraken_account_tier": "pro",
            "sendgrid_host": f"http://127.0.0.1:{mail_port}",
            "withdrawal_halt_poll_seconds": 0.3,
            "withdrawal_settle_poll_seconds": 1.0,
            "withdrawal_absence_checks": 3,
            "withdrawal_absence_interval_seconds": 0.3,
        }
    )
    app = create_app(
        s,
        temporal_address=temporal_address,
        rate_limits=RateLimits(
            anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000
        ),
        email_sender=EmailSender.from_settings(s),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", proxy_headers=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    adapter = CcxtAdapter(
        ExchangeConfig(
            name="binance",
            exchange_id="binance",
            api_key=s.binance_api_key,
            secret=s.binance_secret,
            base_url=venues.urls["binance"],
        )
    )
    kraken = CcxtAdapter(
        ExchangeConfig(
            name="kraken",
            exchange_id="kraken",
            api_key=s.kraken_api_key,
            secret=s.kraken_secret,
            base_url=venues.urls["kraken"],
        )
    )
    deps = Dependencies(
        settings=s,
        engine=engine,
        adapters={"binance": adapter, "kraken": kraken},
        email=EmailSender.from_settings(s),
        bank=BankClient.from_settings(s, timeout=5.0),
    )
    specs = build(deps)
    workers = [
        Worker(
            temporal_client,
            task_queue=q,
            workflows=list(specs[q].workflows),
            activities=list(specs[q].activities),
        )
        for q in (task_queues.PAYMENTS, task_queues.OPS)
    ]
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield Stack(
            settings=s,
            api_url=api_url,
            bank_url=f"http://127.0.0.1:{bank_port}",
            binance_url=venues.urls["binance"],
            kraken_url=venues.urls["kraken"],
            mail_url=f"http://127.0.0.1:{mail_port}",
            bank_state=bank_app[BANK_STATE],
            binance_app=venues.apps["binance"],
            kraken_app=venues.apps["kraken"],
            engine=engine,
            client=temporal_client,
        )
    finally:
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*runs, return_exceptions=True)
        server.should_exit = True
        await serving
        await adapter.close()
        await kraken.close()
        await deps.bank.close()
        await venues.stop()
        await bank_runner.cleanup()
        await mail_runner.cleanup()


@pytest_asyncio.fixture(autouse=True)
async def ledger_invariants(engine: AsyncEngine) -> AsyncIterator[None]:
    """After every test: every hash chain verifies and the books sum to zero per currency."""
    yield
    ledger = Ledger(engine)
    report = await ledger.verify()
    assert report.ok, report.first_problem
    for t in await ledger.totals():
        assert t.total == 0, t


@pytest.fixture(autouse=True)
def clear_bank_faults(stack: Stack) -> None:
    stack.bank_state.faults.clear()


@dataclass
class Customer:
    id: uuid.UUID
    email: str
    token: str
    totp: pyotp.TOTP
    last_step: int = 0

    def headers(self, *, totp: bool = False) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"}
        if totp:
            h["X-TOTP-Code"] = self.next_code()
        return h

    def next_code(self) -> str:
        """A code for a time step after the last one used (each step is accepted once, in order);
        the drift window allows up to one step ahead."""
        code, self.last_step = totp_codes.next_code(self.totp, self.last_step)
        return code


async def make_user(
    stack: Stack, *, tier: int = 3, roles: list[str] | None = None, twofa: bool = True
) -> Customer:
    """A verified customer (or staff) with 2FA and an access token, straight in the database + login."""
    email = f"pay-{uuid.uuid4().hex[:12]}@example.com"
    user_id = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified, first_name, "
                "last_name) VALUES (:id, :e, :p, :t, :r, true, 'A', 'Customer')"
            ),  # the sandbox bank's default payer is "A Customer": their payer accounts match by name
            {"id": user_id, "e": email, "p": hash_password(PASSWORD), "t": tier, "r": roles or []},
        )
    async with stack.http() as c:
        r = await c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
    secret = pyotp.random_base32()
    if twofa:
        async with stack.engine.begin() as conn:
            await conn.execute(
                text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
                {"s": seal(secret), "id": user_id},
            )
    return Customer(id=user_id, email=email, token=token, totp=pyotp.TOTP(secret))


async def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy (state, not time: `timeout` only stops a
    hang; 20 s was outlasted on a loaded 2-core machine now that every withdrawal is also AML-screened)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def balance(stack: Stack, user_id: uuid.UUID, currency: str) -> tuple[Decimal, Decimal]:
    """(balance, reserved) of the customer's account, zeros if it doesn't exist."""
    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT balance, reserved_balance FROM accounts WHERE kind = 'customer' "
                    "AND user_id = :u AND currency = :c"
                ),
                {"u": user_id, "c": currency},
            )
        ).first()
    return (row[0], row[1]) if row else (Decimal(0), Decimal(0))


async def deposit_gbp(stack: Stack, customer: Customer, amount: str) -> dict[str, Any]:
    """Send a Faster Payment under the customer's reference through the sandbox bank; wait for it."""
    async with stack.http() as c:
        r = await c.get(
            "/api/v1/deposits/instructions", params={"currency": "GBP"}, headers=customer.headers()
        )
        assert r.status_code == 200, r.text
        reference = r.json()["reference"]
    before = (await balance(stack, customer.id, "GBP"))[0]
    sent: dict[str, Any] = await stack.bank(
        "POST", "/_control/payments", json={"reference": reference, "amount": amount}
    )

    async def credited() -> bool:
        return (await balance(stack, customer.id, "GBP"))[0] == before + Decimal(amount)

    await wait_for(credited)
    return sent


async def withdrawal_account(stack: Stack, customer: Customer) -> uuid.UUID:
    """The customer's payer account made a GBP withdrawal destination, its cooling-off period already
    past. Confirmed straight in the database: the TOTP confirmation itself is tested in test_payee.py,
    and a TOTP code (one per 30 s step) spent here would leave none for the withdrawal under test."""
    async with stack.http() as c:
        r = await c.get("/api/v1/bank-accounts", headers=customer.headers())
        assert r.status_code == 200, r.text
        account = next(a for a in r.json() if a["status"] in ("UNCONFIRMED", "CONFIRMED"))
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE bank_accounts SET status = 'CONFIRMED', "
                "confirmed_at = coalesce(confirmed_at, now()), "
                "usable_from = now() - interval '1 minute' WHERE id = :id"
            ),
            {"id": account["id"]},
        )
    return uuid.UUID(account["id"])

"""The fault test's own world: a database of its own (on the session's PostgreSQL server), a Temporal dev
server of its own, the sandbox venues, bank and mail sink, the real API (uvicorn, in this loop) and real
worker processes (`python -m workers`) that the test kills.

Its own database and Temporal server because the checks are global: the ledger's zero-sum, every
`provider:<venue>` account against the venue's balances, every order and withdrawal in the database. A
workflow left over by another test (the session's queues are shared) would otherwise be run by this
test's workers against this test's sandboxes and count in its figures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest_asyncio
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from config.settings import DEV_SECRETS
from devstack import migrate
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.temporal_server import temporal_binary
from models.database import async_engine
from providers.email import EmailSender
from sandbox.bank import STATE as BANK_STATE
from sandbox.bank import BankState
from sandbox.bank import create_app as create_bank_app
from sandbox.mail import create_app as create_mail_app
from sandbox.runner import RunningSandboxes, serve, start_venues
from services.passwords import hash_password
from temporal import search_attributes
from tests import totp_codes

os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
PASSWORD = "Correct-Horse-9-battery"
VENUES = ("binance", "kraken")


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
        """A code for a time step after the last one used (each step is accepted once, in order)."""
        code, self.last_step = totp_codes.next_code(self.totp, self.last_step)
        return code


@dataclass
class FaultWorld:
    settings: Settings
    engine: AsyncEngine
    client: Client
    api_url: str
    venues: RunningSandboxes
    bank_url: str
    bank_state: BankState
    http: httpx.AsyncClient
    logs: Path
    workers: list[asyncio.subprocess.Process] = field(default_factory=list)
    password_hash: str = ""

    # -- worker processes --

    def worker_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "ENVIRONMENT": "test",
            "DATABASE_URL": s.database_url,
            "TEMPORAL_ADDRESS": s.temporal_address,
            "BINANCE_URL": self.venues.urls["binance"],
            "KRAKEN_URL": self.venues.urls["kraken"],
            "OTC_URL": "http://127.0.0.1:9",  # no OTC desk: the orders are far below its threshold
            "BANK_URL": self.bank_url,
            "SENDGRID_HOST": s.sendgrid_host,
            "WITHDRAWAL_SETTLE_POLL_SECONDS": str(s.withdrawal_settle_poll_seconds),
            "WITHDRAWAL_HALT_POLL_SECONDS": str(s.withdrawal_halt_poll_seconds),
            "CRYPTO_PROVIDER": "binance",
            "CRYPTO_DEPOSIT_PROVIDER": "kraken",
            # Unknown outcomes are asked about on the same rules as in production, on a test's clock:
            # a placement or payout the venue never shows reaches NEEDS_ATTENTION within the run.
            "ORDER_UNKNOWN_RECHECK_FIRST_S": str(s.order_unknown_recheck_first_s),
            "ORDER_UNKNOWN_RECHECK_MAX_S": str(s.order_unknown_recheck_max_s),
            "ORDER_UNKNOWN_ATTENTION_AFTER_S": str(s.order_unknown_attention_after_s),
            "WITHDRAWAL_ABSENCE_INTERVAL_SECONDS": str(s.withdrawal_absence_interval_seconds),
        }

    async def start_worker(self) -> asyncio.subprocess.Process:
        log = open(self.logs / f"worker-{len(self.workers) + 1}.log", "wb")  # noqa: SIM115 (the child's)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "workers", env=self.worker_env(), stdout=log, stderr=log
        )
        log.close()
        self.workers.append(proc)
        return proc

    async def polling(self, proc: asyncio.subprocess.Process, timeout: float = 60) -> None:
        """Wait until the worker process says it polls its task queues (it has warmed its venues)."""
        log = self.logs / f"worker-{self.workers.index(proc) + 1}.log"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while "worker polling" not in log.read_text(errors="replace"):
            assert proc.returncode is None, f"the worker exited; see {log}"
            assert loop.time() < deadline, f"the worker did not start polling; see {log}"
            await asyncio.sleep(0.1)

    async def kill_worker(self, proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()

    async def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), timeout=20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    # -- customers --

    async def customer(self) -> Customer:
        """A verified tier-3 customer with 2FA, logged in through the API."""
        email = f"fault-{uuid.uuid4().hex[:12]}@example.com"
        user_id = uuid.uuid4()
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified) "
                    "VALUES (:id, :e, :p, 3, '{}', true)"
                ),
                {"id": user_id, "e": email, "p": self.password_hash},
            )
        r = await self.http.post(
            f"{self.api_url}/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        # 2FA through the API's own enrolment, so the seed is stored however the app stores it.
        enrolled = await self.http.post(
            f"{self.api_url}/api/v1/auth/2fa/enroll",
            json={"password": PASSWORD},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert enrolled.status_code == 200, enrolled.text
        customer = Customer(user_id, email, token, pyotp.TOTP(enrolled.json()["secret"]))
        confirmed = await self.http.post(
            f"{self.api_url}/api/v1/auth/2fa/confirm",
            json={"code": customer.next_code()},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert confirmed.status_code == 200, confirmed.text
        return customer

    async def api(self, method: str, path: str, customer: Customer, **kw: Any) -> httpx.Response:
        totp = bool(kw.pop("totp", False))
        return await self.http.request(
            method, f"{self.api_url}/api/v1{path}", headers=customer.headers(totp=totp), **kw
        )

    # -- the outside world's view --

    async def venue_balances(self, venue: str) -> dict[str, Decimal]:
        r = await self.http.get(f"{self.venues.urls[venue]}/_control/balances")
        return {a: Decimal(b["free"]) + Decimal(b["used"]) for a, b in r.json().items()}

    async def venue_orders(self, venue: str) -> list[dict[str, Any]]:
        r = await self.http.get(f"{self.venues.urls[venue]}/_control/orders")
        orders: list[dict[str, Any]] = r.json()["orders"]
        return orders

    async def venue_control(self, venue: str, path: str, body: Any) -> Any:
        r = await self.http.post(f"{self.venues.urls[venue]}/_control/{path}", json=body)
        r.raise_for_status()
        return r.json()


@pytest_asyncio.fixture
async def world(postgres: EmbeddedPostgres) -> AsyncIterator[FaultWorld]:
    database_url = postgres.create_database(f"faults_{uuid.uuid4().hex[:12]}")
    migrate.upgrade(database_url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
    )
    temporal_address = str(env.client.service_client.config.target_host)
    engine = async_engine(database_url, pool_size=10, max_overflow=20)
    mail_runner, mail_port = await serve(create_mail_app(DEV_SECRETS["sendgrid_api_key"]), "127.0.0.1", 0)
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    bank_app = create_bank_app(
        DEV_SECRETS["bank_api_key"],
        webhook_secret=DEV_SECRETS["bank_webhook_secret"],
        webhook_url=f"{api_url}/api/v1/webhooks/bank",
    )
    bank_runner, bank_port = await serve(bank_app, "127.0.0.1", 0)
    venues = await start_venues(list(VENUES), seed=23)
    settings = Settings(
        environment="test",
        database_url=database_url,
        temporal_address=temporal_address,
        bank_url=f"http://127.0.0.1:{bank_port}",
        binance_url=venues.urls["binance"],
        kraken_url=venues.urls["kraken"],
        otc_url="http://127.0.0.1:9",
        crypto_provider="binance",
        crypto_deposit_provider="kraken",
        sendgrid_host=f"http://127.0.0.1:{mail_port}",
        withdrawal_halt_poll_seconds=0.3,
        withdrawal_settle_poll_seconds=1.0,
        order_unknown_recheck_first_s=1.0,
        order_unknown_recheck_max_s=4.0,
        order_unknown_attention_after_s=25.0,
        withdrawal_absence_interval_seconds=3.0,
    )
    app = create_app(
        settings,
        temporal_address=temporal_address,
        rate_limits=RateLimits(
            anonymous_per_minute=100_000, user_per_minute=100_000, withdrawals_per_hour=10_000
        ),
        email_sender=EmailSender.from_settings(settings),
    )
    # A long keep-alive: the test's client must not reuse a connection the server is just closing.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=api_port, log_level="warning", timeout_keep_alive=300)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    logs = Path(tempfile.mkdtemp(prefix="broker-faults-"))
    async with httpx.AsyncClient(timeout=60) as http:
        world = FaultWorld(
            settings=settings,
            engine=engine,
            client=env.client,
            api_url=api_url,
            venues=venues,
            bank_url=f"http://127.0.0.1:{bank_port}",
            bank_state=bank_app[BANK_STATE],
            http=http,
            logs=logs,
            password_hash=hash_password(PASSWORD),
        )
        try:
            yield world
        finally:
            await world.stop_workers()
            server.should_exit = True
            await serving
            await venues.stop()
            await bank_runner.cleanup()
            await mail_runner.cleanup()
            await engine.dispose()
            await env.shutdown()

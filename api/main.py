"""The FastAPI application. `create_app` takes its dependencies so tests build it against their
own database and Temporal; `app` is what uvicorn serves in `make run`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from api import console, docs, errors
from api.console.allowlist import StaffAllowlistMiddleware, parse_networks
from api.deps import TemporalHandle, VenueAdapters
from api.errors import DATABASE_DOWN
from api.input_guard import ControlCharacterGuard
from api.middleware import RequestLogMiddleware
from api.payment_clients import PaymentsClients
from api.ratelimit import RateLimitMiddleware, RateLimits, sweep_expired_windows
from api.routes import (
    account,
    accounts,
    admin,
    admin_adjustments,
    admin_aml,
    admin_gdpr,
    admin_orders,
    auth,
    bank_accounts,
    deposits,
    health,
    kyc,
    market,
    notifications,
    onboarding,
    orders,
    price_alerts,
    proof,
    reconciliation,
    treasury,
    withdrawals,
    ws,
)
from config import Settings, get_settings, log_redaction
from models import sealed
from models.database import async_engine, session_factory
from providers.email import EmailSender
from providers.exchanges.base import ExecutionAdapter
from providers.notification_channels import start_dispatcher
from services.auth import AuthConfig, AuthPolicy
from services.connection_budget import ConnectionBudgetExceeded, check_connection_budget
from services.ledger import Ledger
from services.rate_limit_store import RateLimitStore, rate_limit_engine
from services.screening import matching as name_matching
from temporal.schedules import ensure_payment_schedules

log = logging.getLogger("api.main")


def create_app(
    settings: Settings | None = None,
    *,
    temporal_address: str | None = None,
    auth_policy: AuthPolicy | None = None,
    rate_limits: RateLimits | None = None,
    email_sender: EmailSender | None = None,
    adapters: Mapping[str, ExecutionAdapter] | None = None,
    orders_task_queue: str | None = None,
) -> FastAPI:
    """`auth_policy`, `rate_limits` and `email_sender` default to production values from `settings`;
    tests pass small limits and a sender pointed at their own mail sink. `adapters` (market data,
    quotes, and the payments' deposit addresses and prices) default to `build_adapters(settings)`,
    closed at shutdown; tests pass their own, pointed at in-process sandboxes. `orders_task_queue`
    defaults to the orders queue."""
    settings = settings or get_settings()
    log_redaction.install()
    sealed.configure(settings.totp_encryption_keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.name_matching_warmup:  # before serving: the load holds the GIL (config/settings.py)
            await asyncio.to_thread(name_matching.warm_up)
        engine = async_engine(
            settings.database_url,
            pool_size=settings.api_db_pool_size,
            max_overflow=settings.api_db_max_overflow,
        )
        try:
            await _check_connection_budget(engine, settings)
        except BaseException:
            await engine.dispose()
            raise
        app.state.rate_limit_store = RateLimitStore(
            rate_limit_engine(settings.database_url, pool_size=settings.api_rate_limit_pool_size)
        )
        sweeper = asyncio.create_task(
            sweep_expired_windows(app.state.rate_limit_store, settings.rate_limit_sweep_seconds)
        )
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.temporal = TemporalHandle(settings, temporal_address)
        app.state.ledger = Ledger(engine, house_shards=settings.house_account_shards)
        venues = VenueAdapters(settings, adapters)  # one set for market data, quotes and payments
        app.state.payments = PaymentsClients(settings, email=app.state.email_sender, adapters=venues.get())
        app.state.market = market.MarketState(settings, venues)
        app.state.market.start()  # the process's live order books (services.live_books)
        schedules = asyncio.create_task(ensure_payment_schedules(app.state.temporal.get, settings))
        dispatcher = start_dispatcher(engine, settings)  # the notification outbox (SKIP LOCKED: shared)
        try:
            yield
        finally:
            if dispatcher is not None:
                await dispatcher.stop()
            schedules.cancel()
            sweeper.cancel()
            if getattr(app.state, "live_updates", None) is not None:  # api/routes/ws.py's listener
                await app.state.live_updates.close()
            await app.state.payments.close()
            await app.state.market.close()
            await venues.close()
            if getattr(app.state, "kyc_vendor", None) is not None:
                await app.state.kyc_vendor.close()
            await app.state.rate_limit_store.close()
            await engine.dispose()

    app = FastAPI(
        title="Broker API",
        version="0.1.0",
        summary="UK retail crypto broker: GBP in, BTC/ETH/BNB best-execution trading, GBP and crypto out.",
        lifespan=lifespan,
        docs_url=None,  # served by `docs.install` from local Swagger UI assets
    )
    errors.install(app)
    docs.install(app)
    app.include_router(health.router)
    app.include_router(auth.router, prefix="/api/v1")
    for payments_router in (deposits.router, withdrawals.router, bank_accounts.router):
        app.include_router(payments_router, prefix="/api/v1")
    app.include_router(admin.router, prefix="/api/v1")
    app.include_router(admin_orders.router, prefix="/api/v1")
    app.include_router(reconciliation.router, prefix="/api/v1")
    app.include_router(treasury.router, prefix="/api/v1")
    app.include_router(proof.router, prefix="/api/v1")
    app.include_router(orders.router, prefix="/api/v1")
    app.include_router(onboarding.router, prefix="/api/v1")
    app.include_router(accounts.router, prefix="/api/v1")
    app.include_router(market.router, prefix="/api/v1")
    app.include_router(ws.router, prefix="/api/v1")
    app.include_router(kyc.router, prefix="/api/v1")
    app.include_router(admin_adjustments.router, prefix="/api/v1")
    app.include_router(account.router, prefix="/api/v1")
    app.include_router(admin_gdpr.router, prefix="/api/v1")
    console.install(app)
    app.include_router(admin_aml.router, prefix="/api/v1")
    app.include_router(price_alerts.router, prefix="/api/v1")
    app.include_router(notifications.router, prefix="/api/v1")
    if orders_task_queue is not None:
        app.state.orders_task_queue = orders_task_queue

    app.state.auth = AuthConfig.from_settings(settings, auth_policy)
    app.state.email_sender = email_sender or EmailSender.from_settings(settings)
    app.state.rate_limits = rate_limits or RateLimits.from_settings(settings)
    # Staff routes (/console, /api/v1/admin*) answer only STAFF_IP_ALLOWLIST, before anything else runs.
    app.add_middleware(StaffAllowlistMiddleware, networks=parse_networks(settings.staff_ip_allowlist))
    # Added last = runs first: every request, including rate-limited ones, gets an id and a log line.
    app.add_middleware(RateLimitMiddleware, limits=app.state.rate_limits, tokens=app.state.auth.tokens)
    app.add_middleware(ControlCharacterGuard, raw_body_paths=frozenset({"/api/v1/webhooks/bank"}))
    app.add_middleware(RequestLogMiddleware)
    if settings.forwarded_allow_ips.strip():
        # Outermost: the client address every layer sees (logs, rate limits, lock-outs, sessions, audit)
        # is the one a configured proxy reports; from anyone else X-Forwarded-For is ignored.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    return app


async def _check_connection_budget(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse to start when the configured processes' pools cannot fit the server's `max_connections`
    (services/connection_budget.py). A database that cannot be asked now does not stop the start: the
    API then answers 503 until it is back, and the next start checks again."""
    try:
        budget = await check_connection_budget(engine, settings)
    except ConnectionBudgetExceeded as e:
        log.error("%s", e)
        raise
    except DATABASE_DOWN as e:
        log.warning("connection budget not checked, the database is unavailable: %s", type(e).__name__)
        return
    log.info("connection budget: %s", budget.explain())


def app() -> FastAPI:
    """uvicorn factory (`uvicorn --factory api.main:app`): settings are read at start, not import."""
    return create_app()


def uvicorn_args(settings: Settings) -> list[str]:
    """The command-line arguments every launcher gives uvicorn (`python -m uvicorn …`).

    `--no-proxy-headers`: uvicorn's own default believes X-Forwarded-For from 127.0.0.1, so a client on
    the same host (or behind any local hop) could choose its address; the app applies
    `FORWARDED_ALLOW_IPS` itself instead (see `create_app`).

    `API_PROCESSES` above 1 is uvicorn's `--workers`: that many processes accept on the one socket the
    parent binds (one port), and a process that dies is replaced by uvicorn. They share the rate limits
    and everything else through PostgreSQL and Temporal."""
    args = [
        "--factory",
        "api.main:app",
        "--host",
        settings.api_host,
        "--port",
        str(settings.api_port),
        "--no-access-log",  # the app writes its own access log, without query strings
        "--no-proxy-headers",
    ]
    if settings.api_processes > 1:
        args += ["--workers", str(settings.api_processes)]
    return args

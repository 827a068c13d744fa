"""Shared request dependencies: settings, the database session, the Temporal client, the ledger.

Every client here is built once per API process (in `api/main.py`'s lifespan) and handed to routes as a
dependency alias, never constructed per request. The accessors are `async def` although they never await:
FastAPI runs a plain `def` dependency in its thread pool, a thread hop per dependency per request
(measured on `GET /accounts/balances`, docs/performance.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ServiceUnavailable
from config import Settings
from providers.exchanges.base import ExecutionAdapter
from services.ledger import Ledger
from temporal.client import connect


class TemporalHandle:
    """Connects lazily, so the API starts (and `/readyz` can say why) while Temporal is down."""

    def __init__(self, settings: Settings, address: str | None = None) -> None:
        self._settings = settings
        self._address = address
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def get(self, timeout: float = 5.0) -> Client:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                self._client = await asyncio.wait_for(connect(self._settings, self._address), timeout)
        return self._client


class VenueAdapters:
    """The API process's one venue adapter set, shared by market data and quotes (`MarketState`) and by
    payments (deposit addresses, GBP prices): one connection pool per venue, and one nonce sequence per
    Kraken key (ccxt keeps it per instance; two instances on one key can collide).

    Built from settings on first use and closed at shutdown; adapters passed in (tests point them at
    in-process sandboxes) belong to the caller and are not closed.
    """

    def __init__(self, settings: Settings, injected: Mapping[str, ExecutionAdapter] | None = None) -> None:
        self._settings = settings
        self._adapters = dict(injected) if injected is not None else None
        self.owned = injected is None

    def get(self) -> dict[str, ExecutionAdapter]:
        if self._adapters is None:
            from providers.exchanges.ccxt_adapter import build_adapters

            self._adapters = build_adapters(self._settings)
        return self._adapters

    async def close(self) -> None:
        if self.owned:
            for adapter in (self._adapters or {}).values():
                await adapter.close()


async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with factory() as session:
        yield session


async def read_connection(request: Request) -> AsyncIterator[AsyncConnection]:
    """A pooled connection in autocommit for routes that only read: each statement sees what is
    committed, with no BEGIN and ROLLBACK round trips around it (the pool restores the isolation
    level when the connection goes back)."""
    engine: AsyncEngine = request.app.state.engine
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


async def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


async def get_temporal(request: Request) -> Client:
    handle: TemporalHandle = request.app.state.temporal
    try:
        return await handle.get()
    except Exception as e:
        raise ServiceUnavailable("temporal") from e


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadConnection = Annotated[AsyncConnection, Depends(read_connection)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]
TemporalDep = Annotated[Client, Depends(get_temporal)]

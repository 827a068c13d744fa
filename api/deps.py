"""Shared request dependencies: settings, the database session, the Temporal client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from api.errors import ServiceUnavailable
from config import Settings
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


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with factory() as session:
        yield session


async def get_temporal(request: Request) -> Client:
    handle: TemporalHandle = request.app.state.temporal
    try:
        return await handle.get()
    except Exception as e:
        raise ServiceUnavailable("temporal") from e


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]

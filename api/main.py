"""The FastAPI application. `create_app` takes its dependencies so tests build it against their
own database and Temporal; `app` is what uvicorn serves in `make run`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.deps import TemporalHandle
from api.routes import health
from config import Settings, get_settings
from models.database import async_engine, session_factory


def create_app(settings: Settings | None = None, *, temporal_address: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = async_engine(settings.database_url)
        app.state.settings = settings
        app.state.engine = engine
        app.state.sessions = session_factory(engine)
        app.state.temporal = TemporalHandle(settings, temporal_address)
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(
        title="Broker API",
        version="0.1.0",
        summary="UK retail crypto broker: GBP in, BTC/ETH/BNB best-execution trading, GBP and crypto out.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    return app


def app() -> FastAPI:
    """uvicorn factory (`uvicorn --factory api.main:app`): settings are read at start, not import."""
    return create_app()

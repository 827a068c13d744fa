"""Engine factories. Nothing connects at import; the API and workers build one engine each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import create_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def _psycopg_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def async_engine(
    url: str,
    *,
    pool_size: int = 10,
    max_overflow: int = 20,
    pre_ping: bool = True,
    autocommit: bool = False,
) -> AsyncEngine:
    """`hide_parameters`: a failed statement's error (and so any traceback in a log) names the SQL but
    not the values bound to it, which can be password hashes, emails or TOTP secrets.

    `pre_ping=False` and `autocommit=True` suit a pool whose every use is one self-contained statement
    (the rate-limit store): no ping round trip per checkout, no BEGIN/COMMIT."""
    options: dict[str, Any] = {"isolation_level": "AUTOCOMMIT", "pool_timeout": 10} if autocommit else {}
    return create_async_engine(
        _psycopg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        hide_parameters=True,
        **options,
    )


def sync_engine(url: str) -> Engine:
    return create_engine(_psycopg_url(url), pool_pre_ping=True, hide_parameters=True)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)

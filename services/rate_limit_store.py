"""Rate-limit counters in PostgreSQL, shared by every API process (docs/architecture.md §7, issue 19).

Each hit is one call to the `rate_limit_hit` database function (migration 0026) on a connection in
autocommit: one round trip, counted atomically against the window every process sees, on the
database's clock. The windows are counted in whole buckets of 1/60 of the window and err on the strict
side (see the migration): the limit holds in every window, and a refused client may be told to wait up
to one bucket longer than an exact sliding log would.

The store has its own small pool (`API_RATE_LIMIT_POOL_SIZE`, part of the connection budget) without a
ping on checkout, so the check costs one round trip, not two; a connection found broken is retried once
on a fresh one (a hit counted twice only makes the limit stricter).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from models.database import async_engine

log = logging.getLogger("services.rate_limit_store")

BUCKETS_PER_WINDOW = 60
_HIT = text("SELECT rate_limit_hit(:key, :limit, :window, :buckets, :now)")
# The outer condition is checked again on a row a concurrent hit has just updated, so a window that came
# back to life between the choice and the delete keeps its hit.
_SWEEP = text(
    "DELETE FROM rate_limit_windows WHERE expires_at < now() AND key IN "
    "(SELECT key FROM rate_limit_windows WHERE expires_at < now() LIMIT :batch)"
)


def rate_limit_engine(url: str, *, pool_size: int) -> AsyncEngine:
    """The store's own engine: `pool_size` connections, no overflow, autocommit, no ping on checkout."""
    return async_engine(url, pool_size=pool_size, max_overflow=0, pre_ping=False, autocommit=True)


class RateLimitStore:
    """Counts hits per key in `rate_limit_windows`; every process using the same database shares them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def hit(self, key: str, limit: int, window_s: float, *, now: float | None = None) -> int | None:
        """Count a hit on `key`: None when allowed, else the whole seconds until one would be.

        A refused hit is not counted. `now` (seconds since the epoch) replaces the database's clock in
        tests. Raises the driver's error when the database cannot be reached."""
        params: dict[str, Any] = {
            "key": key[:120],
            "limit": limit,
            "window": window_s,
            "buckets": BUCKETS_PER_WINDOW,
            "now": now,
        }
        try:
            return await self._call(params)
        except DBAPIError as e:
            if not e.connection_invalidated:
                raise
            # A connection that broke since its last use (database restarted): the pool has dropped it.
            log.warning("rate-limit store connection lost; retrying once on a fresh one")
            return await self._call(params)

    async def _call(self, params: dict[str, Any]) -> int | None:
        async with self._engine.connect() as conn:
            wait = (await conn.execute(_HIT, params)).scalar_one()
        return None if wait is None else int(wait)

    async def sweep(self, batch: int = 5000) -> int:
        """Delete up to `batch` windows whose hits have all expired; returns how many."""
        async with self._engine.connect() as conn:
            result = await conn.execute(_SWEEP, {"batch": batch})
        return int(result.rowcount or 0)

    async def close(self) -> None:
        await self._engine.dispose()

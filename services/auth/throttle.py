"""Failure counters with exponential lock-out, kept in PostgreSQL (`auth_throttle`) so that every API
process enforces the same lock. Callers commit; a failure must be committed even when the request fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.auth import AuthThrottle
from services.auth.policy import LockoutPolicy


async def serialize(session: AsyncSession, key: str) -> None:
    """Hold a transaction-scoped advisory lock on `key`, so concurrent guesses against one account are
    checked and counted one at a time (otherwise a burst could all pass the check before any counts)."""
    await session.exec(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))


async def seconds_locked(session: AsyncSession, keys: Iterable[str], now: datetime) -> int | None:
    """Seconds until the longest lock among `keys` ends, or None if none is locked."""
    rows = await session.exec(
        select(col(AuthThrottle.locked_until)).where(
            col(AuthThrottle.key).in_(list(keys)),
            col(AuthThrottle.locked_until) > now,
        )
    )
    ends = [r for r in rows if r is not None]
    if not ends:
        return None
    return max(1, math.ceil((max(ends) - now).total_seconds()))


async def record_failure(session: AsyncSession, key: str, policy: LockoutPolicy, now: datetime) -> bool:
    """Count one failure for `key`; True when this failure (newly) locks it."""
    await session.exec(insert(AuthThrottle).values(key=key, failures=0).on_conflict_do_nothing())
    row = (
        await session.exec(
            select(AuthThrottle)
            .where(col(AuthThrottle.key) == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()
    quiet_since = max((t for t in (row.last_failure_at, row.locked_until) if t is not None), default=None)
    if quiet_since is not None and now - quiet_since > policy.window:
        row.failures = 0
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= policy.max_failures:
        row.locked_until = now + policy.delay(row.failures)
        return True
    return False


async def reset(session: AsyncSession, key: str) -> None:
    await session.exec(delete(AuthThrottle).where(col(AuthThrottle.key) == key))

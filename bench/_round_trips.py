"""Counting a process's PostgreSQL round trips, by kind, through SQLAlchemy's events.

A round trip is a statement, a transaction's BEGIN (psycopg sends it before the first statement of a
transaction, as a command of its own), its COMMIT or ROLLBACK, or the ping on checkout of an engine with
`pool_pre_ping`. Autocommit connections send no BEGIN, COMMIT or ROLLBACK, and are counted so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class RoundTrips:
    """Attach to engines with `watch`; read `counts` (or `total`) and `reset()` between phases."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.statements_by_step: Counter[str] = Counter()  # by Temporal activity, where there is one

    def watch(self, engine: AsyncEngine) -> None:
        sync = engine.sync_engine
        pings = bool(getattr(sync.pool, "_pre_ping", False))

        engine_level = getattr(sync.dialect, "isolation_level", None)

        def autocommit(conn: Any) -> bool:
            return (conn.get_execution_options().get("isolation_level") or engine_level) == "AUTOCOMMIT"

        def statement(conn: Any, *_: Any) -> None:
            self.counts["statements"] += 1
            self.statements_by_step[_step()] += 1
            if not autocommit(conn) and not conn.info.get("_bench_in_tx"):
                conn.info["_bench_in_tx"] = True
                self.counts["begin"] += 1

        def end(kind: str) -> Any:
            def ended(conn: Any) -> None:
                if conn.info.pop("_bench_in_tx", False):
                    self.counts[kind] += 1

            return ended

        def checkout(*_: Any) -> None:
            if pings:
                self.counts["pings"] += 1

        def reset(_dbapi: Any, record: Any, *_: Any) -> None:
            # A connection handed back inside a transaction is rolled back by the pool, not the Connection.
            if record.info.pop("_bench_in_tx", False):
                self.counts["rollback"] += 1

        event.listen(sync, "before_cursor_execute", statement)
        event.listen(sync, "commit", end("commit"))
        event.listen(sync, "rollback", end("rollback"))
        event.listen(sync.pool, "checkout", checkout)
        event.listen(sync.pool, "reset", reset)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts.clear()
        self.statements_by_step.clear()


def _step() -> str:
    from temporalio import activity

    return activity.info().activity_type if activity.in_activity() else "-"

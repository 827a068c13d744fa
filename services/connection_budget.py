"""The PostgreSQL connection budget: every process's pools together must fit the server's limit.

Each API process holds up to `API_DB_POOL_SIZE + API_DB_MAX_OVERFLOW` connections for its requests plus
`API_RATE_LIMIT_POOL_SIZE` for the shared rate limits and one for the WebSocket feed's listener; each
worker process up to `WORKER_DB_POOL_SIZE + WORKER_DB_MAX_OVERFLOW` (the ledger's group commit draws from
that pool). With
`API_PROCESSES` and `WORKER_PROCESSES` of them and `DB_CONNECTION_RESERVE` kept free for superusers,
migrations, the CLI and ops, the total must not exceed `max_connections`. Past it PostgreSQL refuses new
connections ("too many clients") only under load, at the worst moment: so every process checks at start
and refuses to run a configuration that cannot fit (README, "Connection budget").
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings

# The WebSocket feed's listener (services/live_updates.py): one dedicated connection per API process.
LIVE_UPDATES_CONNECTIONS = 1


class ConnectionBudgetExceeded(RuntimeError):
    """The configured processes and pools could hold more connections than the server allows. Lower the
    pools or the process counts, or raise the server's `max_connections`, then start again."""


@dataclass(frozen=True)
class ConnectionBudget:
    """Connections the configured processes may open at most, by kind."""

    api_processes: int
    api_per_process: int
    worker_processes: int
    worker_per_process: int
    reserve: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionBudget:
        return cls(
            api_processes=settings.api_processes,
            api_per_process=settings.api_db_pool_size
            + settings.api_db_max_overflow
            + settings.api_rate_limit_pool_size
            + LIVE_UPDATES_CONNECTIONS,
            worker_processes=settings.worker_processes,
            worker_per_process=settings.worker_db_pool_size + settings.worker_db_max_overflow,
            reserve=settings.db_connection_reserve,
        )

    @property
    def total(self) -> int:
        return (
            self.api_processes * self.api_per_process
            + self.worker_processes * self.worker_per_process
            + self.reserve
        )

    def explain(self) -> str:
        return (
            f"API_PROCESSES {self.api_processes} x {self.api_per_process} "
            f"(API_DB_POOL_SIZE + API_DB_MAX_OVERFLOW + API_RATE_LIMIT_POOL_SIZE + 1 listener) + "
            f"WORKER_PROCESSES {self.worker_processes} x {self.worker_per_process} "
            f"(WORKER_DB_POOL_SIZE + WORKER_DB_MAX_OVERFLOW) + DB_CONNECTION_RESERVE {self.reserve} "
            f"= {self.total}"
        )

    def check(self, max_connections: int) -> None:
        """Raise `ConnectionBudgetExceeded` when the total does not fit `max_connections`."""
        if self.total > max_connections:
            raise ConnectionBudgetExceeded(
                f"connection budget exceeded: {self.explain()} > the server's max_connections "
                f"{max_connections}. Lower the pools or the process counts, or raise max_connections."
            )


async def server_max_connections(engine: AsyncEngine) -> int:
    """The server's `max_connections` (one round trip on one of `engine`'s connections)."""
    async with engine.connect() as conn:
        value = (await conn.execute(text("SHOW max_connections"))).scalar_one()
    return int(value)


async def check_connection_budget(engine: AsyncEngine, settings: Settings) -> ConnectionBudget:
    """Refuse (`ConnectionBudgetExceeded`) a configuration whose processes could exhaust the server.

    The driver's error propagates when the server cannot be asked; the caller decides whether to start."""
    budget = ConnectionBudget.from_settings(settings)
    budget.check(await server_max_connections(engine))
    return budget

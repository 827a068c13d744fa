"""The connection budget: API and worker processes refuse to start when their pools together cannot fit
the server's max_connections, and start with the defaults."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from api.main import create_app
from config import Settings
from services.connection_budget import (
    ConnectionBudget,
    ConnectionBudgetExceeded,
    check_connection_budget,
    server_max_connections,
)


def test_the_defaults_fit_postgres_default_100_connections_and_two_of_each_do_not() -> None:
    one_each = ConnectionBudget.from_settings(Settings())
    assert one_each.total == 1 * (10 + 20 + 4 + 1) + 1 * (20 + 20) + 10
    one_each.check(100)

    two_each = ConnectionBudget.from_settings(Settings(api_processes=2, worker_processes=2))
    with pytest.raises(ConnectionBudgetExceeded) as refused:
        two_each.check(100)
    message = str(refused.value)
    assert "API_PROCESSES 2 x 35" in message and "WORKER_PROCESSES 2 x 40" in message
    assert "= 160 > the server's max_connections 100" in message

    smaller = Settings(api_processes=2, worker_processes=2, api_db_max_overflow=5, worker_db_max_overflow=0)
    ConnectionBudget.from_settings(smaller).check(100)  # 2 x 20 + 2 x 20 + 10 = 90


async def test_the_check_reads_the_servers_limit(engine: AsyncEngine, settings: Settings) -> None:
    limit = await server_max_connections(engine)
    assert limit > 0
    await check_connection_budget(engine, settings)  # the defaults fit
    per_api = settings.api_db_pool_size + settings.api_db_max_overflow + settings.api_rate_limit_pool_size
    too_many = settings.model_copy(update={"api_processes": limit // per_api + 1})
    with pytest.raises(ConnectionBudgetExceeded):
        await check_connection_budget(engine, too_many)


async def test_the_api_refuses_to_start_when_the_budget_cannot_fit(
    engine: AsyncEngine, settings: Settings
) -> None:
    limit = await server_max_connections(engine)
    app = create_app(settings.model_copy(update={"db_connection_reserve": limit}))
    with pytest.raises(ConnectionBudgetExceeded, match="DB_CONNECTION_RESERVE"):
        async with app.router.lifespan_context(app):
            pass
    fits = create_app(settings)
    async with fits.router.lifespan_context(fits):
        assert fits.state.rate_limit_store is not None


async def test_the_worker_process_refuses_to_start_when_the_budget_cannot_fit(
    engine: AsyncEngine, database_url: str, temporal_address: str
) -> None:
    limit = await server_max_connections(engine)
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "TEMPORAL_ADDRESS": temporal_address,
        "WORKER_PROCESSES": str(limit),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "workers", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode != 0
    assert b"worker refuses to start: connection budget exceeded" in stderr
    assert b"WORKER_PROCESSES %d x 40" % limit in stderr


def test_the_venues_request_budget_is_shared_by_every_configured_process() -> None:
    assert Settings().market_data_processes == 2  # one API and one worker process
    assert Settings(api_processes=2, worker_processes=3).market_data_processes == 5
    assert Settings(api_processes=2, market_data_processes=7).market_data_processes == 7  # set explicitly

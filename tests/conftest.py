"""Session fixtures: one real PostgreSQL and one real Temporal dev server for the whole run.

Each test gets its own data (fresh ids) and, for workflows, its own task queue, so tests do not
depend on each other's order.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from config import Settings
from devstack import migrate
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.temporal_server import temporal_binary
from models.database import async_engine
from temporal import search_attributes

# CI runs the same examples every time (a failure is reproducible, never a coin toss); explore locally
# with HYPOTHESIS_PROFILE=explore.
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
hypothesis_settings.register_profile("explore")
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A run stopped with SIGTERM (CI timeout, `timeout`) unwinds like Ctrl-C, so the session fixtures
# below still stop the PostgreSQL and Temporal servers they started instead of leaking them.
signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    data = Path(tempfile.mkdtemp(prefix="broker-test-pg-"))
    server = EmbeddedPostgres(data / "pgdata", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url(postgres: EmbeddedPostgres) -> str:
    url = postgres.create_database("broker_test")
    migrate.upgrade(url)
    return url


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return str(temporal_env.client.service_client.config.target_host)


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_address: str) -> Settings:
    # No live order books here: these suites point their own adapters at in-process sandboxes (the
    # streams would dial the settings' sandbox ports). tests/market_data covers the live books.
    return Settings(
        environment="test",
        database_url=database_url,
        temporal_address=temporal_address,
        market_data_streams=False,
    )


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = async_engine(database_url, pool_size=20, max_overflow=40)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest_asyncio.fixture(scope="session")
async def venue_http() -> AsyncIterator[httpx.AsyncClient]:
    """One HTTP client for the sandboxes' control APIs, shared by every test that sets up venues."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4()}"

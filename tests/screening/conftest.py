"""Screening fixtures: a database of its own (list loads replace a whole source, so other packages'
tests must not share it) with the shipped OFAC SDN and UN lists loaded once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from config import Settings
from devstack import migrate
from devstack.postgres import EmbeddedPostgres
from models.database import async_engine
from models.screening import ListSource
from services.screening.service import ScreeningConfig
from services.screening.sources import load_source, resolve_data_dir
from services.screening.store import load_list


@pytest.fixture(scope="session")
def sanctions_dir() -> Path:
    return resolve_data_dir(Settings(environment="test").sanctions_data_dir)


@pytest.fixture(scope="session")
def screening_config() -> ScreeningConfig:
    return ScreeningConfig.from_settings(Settings(environment="test"))


@pytest_asyncio.fixture(scope="session")
async def screening_engine(postgres: EmbeddedPostgres, sanctions_dir: Path) -> AsyncIterator[AsyncEngine]:
    url = postgres.create_database("screening_test")
    migrate.upgrade(url)
    engine = async_engine(url)
    for source in (ListSource.OFAC_SDN, ListSource.UN_SC):
        await load_list(engine, source, load_source(sanctions_dir, source))
    try:
        yield engine
    finally:
        await engine.dispose()


async def make_customer(engine: AsyncEngine) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, password_hash, kyc_tier) VALUES (:id, :e, 'x', 1)"),
            {"id": user_id, "e": f"screen-{user_id.hex[:12]}@example.com"},
        )
    return user_id

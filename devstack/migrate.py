"""Apply and revert Alembic migrations programmatically (dev stack, tests, `make migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str, target: str = "heads") -> None:
    command.upgrade(alembic_config(url), target)
    if target == "heads":
        load_reference_data(url)


def load_reference_data(url: str) -> None:
    """Data the schema ships with: the AML rule set seed versions (config/aml/), loaded once each."""
    from sqlalchemy import create_engine

    from services.aml.versions import load_seed_versions

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            load_seed_versions(conn)
    finally:
        engine.dispose()


def downgrade(url: str, target: str = "base") -> None:
    command.downgrade(alembic_config(url), target)

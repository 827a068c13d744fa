"""Migrations build the schema from nothing, match the models, and come back down cleanly."""

from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

import models  # noqa: F401
from devstack import migrate
from devstack.postgres import EmbeddedPostgres

EXPECTED_TABLES = {
    "users",
    "accounts",
    "ledger_entries",
    "orders",
    "trades",
    "provider_fills",
    "deposits",
    "withdrawals",
    "kyc_submissions",
    "aml_checks",
    "reconciliation_runs",
    "audit_log",
}


def _tables(url: str) -> set[str]:
    eng = create_engine(url)
    try:
        return set(inspect(eng).get_table_names()) - {"alembic_version"}
    finally:
        eng.dispose()


def test_upgrade_downgrade_upgrade_on_empty_database(postgres: EmbeddedPostgres) -> None:
    url = postgres.create_database("migrations_roundtrip")
    assert _tables(url) == set()

    migrate.upgrade(url)
    assert EXPECTED_TABLES <= _tables(url)

    migrate.downgrade(url, "base")
    assert _tables(url) == set()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        functions = conn.execute(
            "SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public'"
        ).fetchall()
    assert functions == [], "downgrade left functions behind"

    migrate.upgrade(url)
    assert EXPECTED_TABLES <= _tables(url)


def test_models_and_migrations_agree(database_url: str) -> None:
    eng = create_engine(database_url)
    try:
        with eng.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    finally:
        eng.dispose()
    assert diff == [], f"models differ from the migrated schema: {diff}"

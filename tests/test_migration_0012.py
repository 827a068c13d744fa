"""Migration 0012 on data recorded before it: crypto deposits get their receiving address as `output` (so
the poller finds them under the new per-output key and credits nothing twice), and payer accounts that
were trusted without a name check must be confirmed again."""

from __future__ import annotations

import uuid

import psycopg

from devstack import migrate
from devstack.postgres import EmbeddedPostgres


def test_existing_deposits_and_bank_accounts_are_carried_over(postgres: EmbeddedPostgres) -> None:
    url = postgres.create_database("migration_0012_data")
    migrate.upgrade(url, "0008")
    user_id, crypto_id, bank_id, account_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute(
            "INSERT INTO users (id, email, password_hash) VALUES (%s, 'old@example.com', 'x')", (user_id,)
        )
        conn.execute(
            "INSERT INTO deposits (id, user_id, currency, amount, payment_method, provider, provider_tx_id, "
            "status, details) VALUES (%s, %s, 'BTC', 0.5, 'CRYPTO', 'kraken', 'tx1', 'CONFIRMED', "
            '\'{"address": "bc1qold", "confirmations": 3}\'), '
            "(%s, %s, 'GBP', 10, 'BANK_TRANSFER', 'bank', 'fps1', 'CONFIRMED', '{\"reference\": \"BRK-1\"}')",
            (crypto_id, user_id, bank_id, user_id),
        )
        conn.execute(
            "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, verified, "
            "verified_by) VALUES (%s, %s, 'Mallory Evil', '090128', '31926819', true, 'inbound_payment')",
            (account_id, user_id),
        )
    migrate.upgrade(url)
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        outputs: dict[str, str] = dict(conn.execute("SELECT provider_tx_id, output FROM deposits").fetchall())
        assert outputs == {"tx1": "bc1qold", "fps1": ""}
        status = conn.execute("SELECT status FROM bank_accounts WHERE id = %s", (account_id,)).fetchone()
        assert status == ("UNCONFIRMED",)
    migrate.downgrade(url, "0008")  # and back: one row per (provider, tx) again

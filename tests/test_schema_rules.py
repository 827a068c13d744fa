"""The database itself enforces the seed's rules, whatever code talks to it."""

from __future__ import annotations

import uuid

import psycopg
import pytest


def _conn(url: str) -> psycopg.Connection:
    return psycopg.connect(url.replace("+psycopg", ""), autocommit=True)


def _user(conn: psycopg.Connection) -> uuid.UUID:
    uid = uuid.uuid4()
    conn.execute(
        "INSERT INTO users (id, email, password_hash, kyc_tier, status, email_verified, twofa_enabled) "
        "VALUES (%s, %s, 'x', 0, 'ACTIVE', false, false)",
        (uid, f"{uid}@example.test"),
    )
    return uid


def _account(
    conn: psycopg.Connection,
    user_id: uuid.UUID,
    balance: str = "0",
    available: str = "0",
    reserved: str = "0",
) -> uuid.UUID:
    aid = uuid.uuid4()
    conn.execute(
        "INSERT INTO accounts (id, kind, user_id, currency, balance, available_balance, reserved_balance) "
        "VALUES (%s, 'customer', %s, 'GBP', %s, %s, %s)",
        (aid, user_id, balance, available, reserved),
    )
    return aid


def _entry(conn: psycopg.Connection, account_id: uuid.UUID) -> uuid.UUID:
    """Post a balanced pair through the ledger function; return the customer's entry id."""
    house = uuid.uuid4()
    conn.execute(
        "INSERT INTO accounts (id, kind, code, currency, shard) VALUES (%s, 'house', %s, 'GBP', 0)",
        (house, f"test:{house}"),
    )
    ref = uuid.uuid4()
    legs = (
        f'[{{"account_id": "{account_id}", "currency": "GBP", "amount": "10"}},'
        f' {{"account_id": "{house}", "currency": "GBP", "amount": "-10"}}]'
    )
    conn.execute(
        "SELECT ledger_post(%s, %s, 'h', 'test', 'TEST', %s, NULL, '{}'::jsonb, %s::jsonb, true)",
        (uuid.uuid4(), f"TEST:{ref}:x", ref, legs),
    )
    row = conn.execute(
        "SELECT id FROM ledger_entries WHERE account_id = %s ORDER BY seq DESC LIMIT 1", (account_id,)
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def test_ledger_entries_refuse_update_and_delete(database_url: str) -> None:
    with _conn(database_url) as conn:
        account = _account(conn, _user(conn))
        entry = _entry(conn, account)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("UPDATE ledger_entries SET amount = 1000 WHERE id = %s", (entry,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("DELETE FROM ledger_entries WHERE id = %s", (entry,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute("TRUNCATE ledger_entries CASCADE")
        row = conn.execute("SELECT amount FROM ledger_entries WHERE id = %s", (entry,)).fetchone()
        assert row is not None and row[0] == 10


def test_audit_log_is_append_only(database_url: str) -> None:
    with _conn(database_url) as conn:
        aid = uuid.uuid4()
        conn.execute("INSERT INTO audit_log (id, actor_type, action) VALUES (%s, 'test', 'x')", (aid,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE audit_log SET action = 'y' WHERE id = %s", (aid,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM audit_log WHERE id = %s", (aid,))


@pytest.mark.parametrize(
    ("balance", "available", "reserved"),
    [
        ("-1", "-1", "0"),  # negative customer balance
        ("10", "-5", "15"),  # negative available
        ("10", "15", "-5"),  # negative reserved
        ("10", "4", "5"),  # balance != available + reserved
    ],
)
def test_balance_checks_reject_bad_rows(
    database_url: str, balance: str, available: str, reserved: str
) -> None:
    with _conn(database_url) as conn:
        user = _user(conn)
        with pytest.raises(psycopg.errors.CheckViolation):
            _account(conn, user, balance, available, reserved)


def test_balance_checks_reject_bad_updates(database_url: str) -> None:
    with _conn(database_url) as conn:
        account = _account(conn, _user(conn))
        _entry(conn, account)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "UPDATE accounts SET balance = balance - 20, available_balance = available_balance - 20 "
                "WHERE id = %s",
                (account,),
            )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE accounts SET reserved_balance = 3 WHERE id = %s", (account,))


def test_one_account_per_customer_and_currency(database_url: str) -> None:
    with _conn(database_url) as conn:
        user = _user(conn)
        _account(conn, user)
        with pytest.raises(psycopg.errors.UniqueViolation):
            _account(conn, user)


def test_provider_fill_unique_per_provider_order(database_url: str) -> None:
    with _conn(database_url) as conn:
        insert = (
            "INSERT INTO provider_fills (id, provider, provider_order_id, symbol, side, amount, price, fee, "
            "status, executed_at) VALUES (%s, %s, %s, 'BTC-GBP', 'BUY', 1, 40000, 0.1, 'FILLED', now())"
        )
        order_id = str(uuid.uuid4())
        conn.execute(insert, (uuid.uuid4(), "binance", order_id))
        conn.execute(insert, (uuid.uuid4(), "kraken", order_id))  # another venue may reuse the id
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert, (uuid.uuid4(), "binance", order_id))

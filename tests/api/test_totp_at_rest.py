"""TOTP seeds are encrypted at rest: the database holds Fernet tokens, keys rotate, the migration
encrypts seeds stored before it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pyotp
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from cli.manage import rotate_totp_keys
from config.settings import DEV_SECRETS
from devstack import migrate
from devstack.postgres import EmbeddedPostgres
from models import sealed
from tests.api.conftest import bearer, enable_2fa, login, register


@pytest.fixture
def restore_keys() -> Iterator[None]:
    yield
    sealed.configure(DEV_SECRETS["totp_encryption_keys"])


async def _stored(engine: AsyncEngine, email: str) -> str:
    async with engine.connect() as conn:
        r = await conn.execute(text("SELECT twofa_secret FROM users WHERE email = :e"), {"e": email})
        return str(r.scalar_one())


async def test_the_database_holds_only_an_encrypted_seed(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    secret, (code, _) = await enable_2fa(client, tokens)
    stored = await _stored(engine, email)
    assert secret not in stored and stored.startswith("gAAAAA")
    assert Fernet(DEV_SECRETS["totp_encryption_keys"]).decrypt(stored.encode()).decode() == secret
    await login(client, email, totp_code=code)  # and it still works as a second factor


async def test_keys_rotate_first_encrypts_all_decrypt(
    client: httpx.AsyncClient, engine: AsyncEngine, database_url: str, restore_keys: None
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    _, (code, _) = await enable_2fa(client, tokens)
    old_key = DEV_SECRETS["totp_encryption_keys"]
    new_key = Fernet.generate_key().decode()
    sealed.configure(f"{new_key},{old_key}")
    await login(client, email, totp_code=code)  # the old key still decrypts

    sync = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with Session(sync) as session:
        assert rotate_totp_keys(session) >= 1
    sync.dispose()
    stored = await _stored(engine, email)
    Fernet(new_key).decrypt(stored.encode())
    with pytest.raises(Exception):  # noqa: B017 - any failure: the old key no longer opens it
        Fernet(old_key).decrypt(stored.encode())
    sealed.configure(new_key)  # old key dropped: still readable
    r = await client.post("/api/v1/auth/2fa/disable", json={"code": "000000"}, headers=bearer(tokens))
    assert r.status_code == 403 and r.json()["code"] in ("totp_invalid", "totp_replayed")


def test_migration_encrypts_existing_seeds_and_downgrade_decrypts(postgres: EmbeddedPostgres) -> None:
    url = postgres.create_database("migration_totp_seal")
    migrate.upgrade(url, "0008")
    seed = pyotp.random_base32()
    eng = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, twofa_enabled, twofa_secret) "
                "VALUES (gen_random_uuid(), 'old@example.com', 'x', true, :s)"
            ),
            {"s": seed},
        )
    read = text("SELECT twofa_secret FROM users WHERE email = 'old@example.com'")
    try:
        migrate.upgrade(url, "0013")
        with eng.connect() as conn:
            stored = conn.execute(read).scalar_one()
        assert stored != seed and sealed.unseal(stored) == seed
        migrate.upgrade(url, "0013")  # a re-run changes nothing
        migrate.downgrade(url, "0008")
        with eng.connect() as conn:
            assert conn.execute(read).scalar_one() == seed
    finally:
        eng.dispose()

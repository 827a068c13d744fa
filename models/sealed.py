"""Columns encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256), for secrets we must read back.

`users.twofa_secret` is the TOTP seed: whoever reads it can make valid codes forever, so a database
dump, a backup or a read-only SQL injection must not yield it. Values are encrypted when written and
decrypted when read by the `Sealed` column type, so code using `User.twofa_secret` sees plain text
and the database only ever holds tokens.

Keys come from `TOTP_ENCRYPTION_KEYS` (comma-separated Fernet keys): the first encrypts, every one
decrypts (`MultiFernet`). Rotation: put a new key first, run `python -m cli rotate-totp-keys` (each row
re-encrypted with the first key), then drop the old key. Production refuses the development key
(`config.settings`). Raw SQL that writes the column must write `seal(value)`.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

_keyring: MultiFernet | None = None


class SealedValueUnreadable(Exception):
    """A sealed column holds something no configured key opens: a key was dropped before rotation
    finished, or a value was written unencrypted behind the model's back. Restore the key (or re-seal
    the value); the row is unusable until then."""


def configure(keys: str) -> None:
    """Use `keys` (comma-separated Fernet keys, the first encrypts) from now on, in this process."""
    global _keyring
    parsed = [k.strip() for k in keys.split(",") if k.strip()]
    if not parsed:
        raise ValueError("TOTP_ENCRYPTION_KEYS is empty")
    _keyring = MultiFernet([Fernet(k.encode()) for k in parsed])


def keyring() -> MultiFernet:
    if _keyring is None:
        from config import get_settings  # late: models import before settings exist in some tools

        configure(get_settings().totp_encryption_keys)
    assert _keyring is not None
    return _keyring


def seal(value: str) -> str:
    return keyring().encrypt(value.encode()).decode()


def unseal(token: str) -> str:
    try:
        return keyring().decrypt(token.encode()).decode()
    except InvalidToken as e:
        raise SealedValueUnreadable("a sealed value could not be decrypted with TOTP_ENCRYPTION_KEYS") from e


def reseal(token: str) -> str:
    """`token` encrypted again with the first key (key rotation); unchanged plaintext."""
    try:
        return keyring().rotate(token.encode()).decode()
    except InvalidToken as e:
        raise SealedValueUnreadable("a sealed value could not be decrypted with TOTP_ENCRYPTION_KEYS") from e


class Sealed(TypeDecorator[str]):
    """A string column stored encrypted. The plaintext never reaches SQL (not even in parameters)."""

    impl = String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else seal(str(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else unseal(str(value))

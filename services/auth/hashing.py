"""Password hashing for the auth functions: argon2id runs in a worker thread (it is deliberately slow,
and the event loop must keep serving other requests meanwhile); a policy failure is a `PolicyViolation`
naming the field."""

from __future__ import annotations

import asyncio
from functools import cache

from services import passwords
from services.auth.errors import PolicyViolation


@cache
def dummy_hash() -> str:
    """Verified against when the email is unknown, so both cases cost the same time."""
    return passwords.hash_password("timing-equaliser-Aa1!")


async def hash_password(password: str) -> str:
    """The argon2id hash of `password`, computed off the event loop."""
    return await asyncio.to_thread(passwords.hash_password, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`, checked off the event loop."""
    return await asyncio.to_thread(passwords.verify_password, password_hash, password)


def check_policy(password: str, field: str) -> None:
    """Refuse a weak password as a `PolicyViolation` naming `field` (the request body's field)."""
    try:
        passwords.check_policy(password)
    except passwords.WeakPassword as e:
        raise PolicyViolation(str(e), code="weak_password", field=field) from e

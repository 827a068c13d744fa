"""TOTP codes for the tests' users and staff: one rule (`devstack.totp_steps`, which `make demo` uses
too) instead of one copy per conftest; the previous step's code expiring between the fill and the
server's check was a `totp_invalid` flake in the console tests."""

from __future__ import annotations

import uuid

import pyotp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from devstack.totp_steps import STEP_S, next_step
from models.sealed import seal

# The previous step's code only with 3 s of the step left (a request is at the server well within that);
# never a sleep longer than that: the tests' API and workers share the test's event loop.
MARGIN_S = 3.0


def next_code(totp: pyotp.TOTP, last_step: int) -> tuple[str, int]:
    """(code, its step) for the next unused step after `last_step`."""
    step = next_step(last_step, margin_s=MARGIN_S, max_wait_s=MARGIN_S + 0.1)
    return totp.at(step * STEP_S), step


async def enable_second_factor(conn: AsyncConnection, user_id: uuid.UUID) -> pyotp.TOTP:
    """Turn 2FA on for a user straight in the database (after its login, which would otherwise ask for a
    code): what staff need before any staff route answers them."""
    secret = pyotp.random_base32()
    await conn.execute(
        text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
        {"s": seal(secret), "id": user_id},
    )
    return pyotp.TOTP(secret)

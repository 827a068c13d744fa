"""TOTP codes for the tests' users and staff: one rule instead of one copy per conftest.

The server accepts each time step once, in order, within a drift window of one step either side. A code
of the previous step is still accepted only until the current step ends, so it is used only while at
least `MARGIN_S` of the step are left: a login or request that reaches the server a few seconds later on a
loaded machine must not find its code expired (that was a `totp_invalid` flake in the console tests).
"""

from __future__ import annotations

import time
import uuid

import pyotp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.sealed import seal

STEP_S = 30
MARGIN_S = 10.0


def next_step(last_step: int) -> int:
    """The earliest unused step whose code the server will still accept `MARGIN_S` from now; waits for
    the next step when the drift window's steps are used up."""
    while True:
        now = time.time()
        now_step = int(now // STEP_S)
        oldest = now_step - 1 if now % STEP_S < STEP_S - MARGIN_S else now_step
        step = max(oldest, last_step + 1)
        if step <= now_step + 1:
            return step
        time.sleep(STEP_S - now % STEP_S + 0.05)


def next_code(totp: pyotp.TOTP, last_step: int) -> tuple[str, int]:
    """(code, its step) for the next unused step after `last_step`."""
    step = next_step(last_step)
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

"""Freezing a customer's account (issue 16 item 4, the "critical" branch of the SAR workflow).

While a freeze is active (an `aml_freezes` row not lifted):
- orders are refused at the order saga's accept step, in neutral words (`ORDER_REFUSAL_TEXT`);
- withdrawals keep their hold and wait before sending, in the visible HALTED state with a neutral reason
  ("under review"), through the same gate as a currency halt (`withdrawal_gate_reason`); they carry on at
  the gate's next check once the freeze is lifted;
- deposits are still credited: the money is the customer's whatever we find, and refusing it would tip
  them off and leave it nowhere.

No tipping off (POCA s.333A): no text here that a customer can see names AML, a report or a freeze.

Lifting needs two different compliance users: the first asks (`request_unfreeze`), another lifts it
(`confirm_unfreeze`); the database refuses a row lifted by the person who asked (ck_aml_freezes_two_people).
Each step is audited with the staff user, who proved TOTP at the API.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.alerts import audit
from services.errors import DomainError

ORDER_REFUSAL_CODE = "order_refused"
ORDER_REFUSAL_TEXT = "this order cannot be accepted right now; please contact support"
WITHDRAWAL_WAIT_TEXT = "your withdrawal is under review"


class FreezeRefused(DomainError):
    """A freeze or unfreeze step that cannot be taken in the account's current state; read `detail`,
    nothing changed."""

    default_code = "freeze_refused"
    status = 409


class SecondPersonRequired(FreezeRefused):
    """The unfreeze was asked for by this same user: another compliance user must confirm it."""

    default_code = "second_person_required"


@dataclass(frozen=True, slots=True)
class FreezeState:
    """A customer's freeze as compliance sees it (internal only)."""

    freeze_id: uuid.UUID
    user_id: uuid.UUID
    case_id: uuid.UUID | None
    reason: str
    frozen_by: uuid.UUID
    frozen_at: datetime
    unfreeze_requested_by: uuid.UUID | None
    lifted_by: uuid.UUID | None
    lifted_at: datetime | None

    @property
    def active(self) -> bool:
        return self.lifted_at is None


_COLUMNS = "id, user_id, case_id, reason, frozen_by, frozen_at, unfreeze_requested_by, lifted_by, lifted_at"


def _state(row: object) -> FreezeState:
    return FreezeState(*row)  # type: ignore[misc]


async def is_frozen(conn: AsyncConnection, user_id: uuid.UUID) -> bool:
    row = await conn.execute(
        text("SELECT 1 FROM aml_freezes WHERE user_id = :u AND lifted_at IS NULL"), {"u": user_id}
    )
    return row.first() is not None


async def active_freeze(conn: AsyncConnection, user_id: uuid.UUID) -> FreezeState | None:
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM aml_freezes WHERE user_id = :u AND lifted_at IS NULL"),
            {"u": user_id},
        )
    ).first()
    return _state(row) if row else None


async def freeze_customer(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    staff_id: uuid.UUID,
    reason: str,
    case_id: uuid.UUID | None = None,
) -> FreezeState:
    """Freeze the account; idempotent (an account already frozen keeps its freeze, which is returned)."""
    await conn.execute(
        text(
            "INSERT INTO aml_freezes (id, user_id, case_id, reason, frozen_by) VALUES (:id, :u, :c, :r, :s) "
            "ON CONFLICT (user_id) WHERE lifted_at IS NULL DO NOTHING"
        ),
        {"id": uuid.uuid4(), "u": user_id, "c": case_id, "r": reason, "s": staff_id},
    )
    state = await active_freeze(conn, user_id)
    assert state is not None
    await audit(
        conn, "aml.freeze", actor_id=staff_id, actor_type="staff", target_type="user", target_id=str(user_id),
        freeze_id=str(state.freeze_id), case_id=str(case_id) if case_id else None,
    )  # fmt: skip
    return state


async def request_unfreeze(engine: AsyncEngine, *, user_id: uuid.UUID, staff_id: uuid.UUID) -> FreezeState:
    """First of the two people: record the request (asking again changes nothing)."""
    async with engine.begin() as conn:
        state = await _lock_active(conn, user_id)
        if state.unfreeze_requested_by is not None and state.unfreeze_requested_by != staff_id:
            raise FreezeRefused("an unfreeze is already requested by someone else: confirm it instead")
        if state.unfreeze_requested_by is None:
            await conn.execute(
                text(
                    "UPDATE aml_freezes SET unfreeze_requested_by = :s, unfreeze_requested_at = now() "
                    "WHERE id = :id"
                ),
                {"s": staff_id, "id": state.freeze_id},
            )
            await audit(
                conn, "aml.unfreeze.requested", actor_id=staff_id, actor_type="staff", target_type="user",
                target_id=str(user_id), freeze_id=str(state.freeze_id),
            )  # fmt: skip
        return await _by_id(conn, state.freeze_id)


async def confirm_unfreeze(engine: AsyncEngine, *, user_id: uuid.UUID, staff_id: uuid.UUID) -> FreezeState:
    """Second of the two people: lift the freeze. The person who asked cannot confirm (refused and
    audited: `SecondPersonRequired`)."""
    async with engine.begin() as conn:
        state = await _lock_active(conn, user_id)
        if state.unfreeze_requested_by is None:
            raise FreezeRefused("no unfreeze has been requested: a first compliance user must request it")
        same_person = state.unfreeze_requested_by == staff_id
        if same_person:
            await audit(
                conn, "aml.unfreeze.refused", actor_id=staff_id, actor_type="staff", target_type="user",
                target_id=str(user_id), freeze_id=str(state.freeze_id), refusal="same_person",
            )  # fmt: skip
        else:
            await conn.execute(
                text("UPDATE aml_freezes SET lifted_by = :s, lifted_at = now() WHERE id = :id"),
                {"s": staff_id, "id": state.freeze_id},
            )
            await audit(
                conn, "aml.unfreeze", actor_id=staff_id, actor_type="staff", target_type="user",
                target_id=str(user_id), freeze_id=str(state.freeze_id),
                requested_by=str(state.unfreeze_requested_by),
            )  # fmt: skip
            return await _by_id(conn, state.freeze_id)
    raise SecondPersonRequired("the unfreeze must be confirmed by a different compliance user")


async def _by_id(conn: AsyncConnection, freeze_id: uuid.UUID) -> FreezeState:
    row = (
        await conn.execute(text(f"SELECT {_COLUMNS} FROM aml_freezes WHERE id = :id"), {"id": freeze_id})
    ).one()
    return _state(row)


async def _lock_active(conn: AsyncConnection, user_id: uuid.UUID) -> FreezeState:
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM aml_freezes WHERE user_id = :u AND lifted_at IS NULL FOR UPDATE"),
            {"u": user_id},
        )
    ).first()
    if row is None:
        raise FreezeRefused("the account is not frozen")
    return _state(row)


async def withdrawal_gate_reason(
    engine: AsyncEngine, *, currency: str, user_id: uuid.UUID | None
) -> str | None:
    """Why a withdrawal must wait before sending, in words the customer may see, or None to go ahead:
    the customer's freeze (neutral words) first, then a halt of the currency."""
    async with engine.connect() as conn:
        if user_id is not None and await is_frozen(conn, user_id):
            return WITHDRAWAL_WAIT_TEXT
        row = (
            await conn.execute(text("SELECT reason FROM currency_halts WHERE currency = :c"), {"c": currency})
        ).first()
    return f"{currency} withdrawals are halted: {row[0]}" if row else None

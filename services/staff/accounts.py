"""Staff accounts, managed by admins in the console: create, set roles, reset TOTP enrolment, disable,
enable. Every change is audited with who did it, from where, and the value before and after; a change
that weakens an account (roles, TOTP reset, disable) ends that person's console sessions at once.

Guards: nobody changes their own roles or disables themselves (an admin cannot lock the last admin out by
accident, nor grant themselves approval rights), and roles are only staff roles (customers stay customers).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.users import User, UserStatus
from services import audit
from services.auth.context import normalize_email, utcnow
from services.auth.hashing import check_policy, hash_password
from services.errors import DomainError
from services.staff.permissions import STAFF_ROLES, is_staff
from services.staff.sessions import revoke_all


class StaffChangeRefused(DomainError):
    """The change is not allowed (own account, unknown role, no role, email taken): nothing changed."""

    default_code = "staff_change_refused"
    status = 409


class StaffNotFound(DomainError):
    """No staff member with this id."""

    default_code = "not_found"
    status = 404


@dataclass(frozen=True)
class Actor:
    """Who makes the change, and from where (for the audit row)."""

    id: uuid.UUID
    ip: str | None


@dataclass(frozen=True)
class StaffRow:
    id: uuid.UUID
    email: str
    name: str
    roles: list[str]
    status: str
    twofa_enabled: bool
    last_login: datetime | None


def _clean_roles(roles: list[str]) -> list[str]:
    unknown = sorted(set(roles) - set(STAFF_ROLES))
    if unknown:
        raise StaffChangeRefused(f"unknown roles: {', '.join(unknown)}", code="unknown_role", field="roles")
    if not roles:
        raise StaffChangeRefused("a staff member needs at least one role", code="no_role", field="roles")
    return [r for r in STAFF_ROLES if r in roles]


async def list_staff(session: AsyncSession) -> list[StaffRow]:
    """Everyone with a staff role, by email. Only the listed columns are read: loading whole `User` rows
    would decrypt every TOTP secret (a sealed column), and one sealed under a retired key would fail the
    whole page."""
    conn = await session.connection()
    rows = (
        await conn.execute(
            text(
                "SELECT id, email, first_name, last_name, roles, status, twofa_enabled, last_login "
                "FROM users WHERE roles && CAST(:roles AS text[]) ORDER BY email"
            ),
            {"roles": list(STAFF_ROLES)},
        )
    ).all()
    return [
        StaffRow(
            uid,
            email,
            f"{first or ''} {last or ''}".strip(),
            list(roles),
            status,
            twofa_enabled,
            last_login,
        )  # fmt: skip
        for uid, email, first, last, roles, status, twofa_enabled, last_login in rows
    ]


async def _staff(session: AsyncSession, staff_id: uuid.UUID) -> User:
    user = await session.get(User, staff_id, with_for_update=True)
    if user is None or not is_staff(user.roles):
        raise StaffNotFound("no such staff member")
    return user


async def create_staff(
    session: AsyncSession,
    actor: Actor,
    *,
    email: str,
    first_name: str,
    last_name: str,
    roles: list[str],
    password: str,
) -> uuid.UUID:
    """A new staff account with an initial password the admin hands over; TOTP is enrolled at first login."""
    email = normalize_email(email)
    roles = _clean_roles(roles)
    check_policy(password, "password")
    taken = (await session.exec(select(User.id).where(col(User.email) == email))).first()
    if taken is not None:
        raise StaffChangeRefused("an account with this email exists", code="email_taken", field="email")
    user = User(
        email=email,
        password_hash=await hash_password(password),
        first_name=first_name or None,
        last_name=last_name or None,
        roles=roles,
        email_verified=True,
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session, "staff.account.created", actor_id=actor.id, actor_type="staff", target_type="user",
        target_id=user.id, ip=actor.ip, details={"email": email, "before": None, "after": {"roles": roles}},
    )  # fmt: skip
    await session.commit()
    return user.id


async def set_roles(session: AsyncSession, actor: Actor, staff_id: uuid.UUID, roles: list[str]) -> None:
    if staff_id == actor.id:
        raise StaffChangeRefused("ask another admin to change your own roles", code="own_account")
    roles = _clean_roles(roles)
    user = await _staff(session, staff_id)
    before = list(user.roles)
    if before == roles:
        return
    user.roles = roles
    user.updated_at = utcnow()
    await revoke_all(session, user.id, utcnow())
    await audit.record(
        session, "staff.account.roles_set", actor_id=actor.id, actor_type="staff", target_type="user",
        target_id=user.id, ip=actor.ip, details={"before": {"roles": before}, "after": {"roles": roles}},
    )  # fmt: skip
    await session.commit()


async def reset_totp(session: AsyncSession, actor: Actor, staff_id: uuid.UUID) -> None:
    """Forget the staff member's TOTP secret: they enrol a new one at their next login."""
    user = await _staff(session, staff_id)
    before = user.twofa_enabled
    user.twofa_enabled = False
    user.twofa_secret = None
    user.updated_at = utcnow()
    await revoke_all(session, user.id, utcnow())
    await audit.record(
        session, "staff.account.totp_reset", actor_id=actor.id, actor_type="staff", target_type="user",
        target_id=user.id, ip=actor.ip,
        details={"before": {"twofa_enabled": before}, "after": {"twofa_enabled": False}},
    )  # fmt: skip
    await session.commit()


async def set_active(session: AsyncSession, actor: Actor, staff_id: uuid.UUID, active: bool) -> None:
    """Disable (SUSPENDED: no login, sessions ended) or enable again (ACTIVE)."""
    if staff_id == actor.id:
        raise StaffChangeRefused("you cannot disable or enable yourself", code="own_account")
    user = await _staff(session, staff_id)
    before = user.status
    after = UserStatus.ACTIVE.value if active else UserStatus.SUSPENDED.value
    if before == after:
        return
    user.status = after
    user.updated_at = utcnow()
    if not active:
        await revoke_all(session, user.id, utcnow())
    await audit.record(
        session, "staff.account.enabled" if active else "staff.account.disabled", actor_id=actor.id,
        actor_type="staff", target_type="user", target_id=user.id, ip=actor.ip,
        details={"before": {"status": before}, "after": {"status": after}},
    )  # fmt: skip
    await session.commit()

"""One customer as staff investigate them (the console's customer screen, issue 18): search by email or
id, then every section through the service that owns it — balances and the ledger trail
(`services.account_views`, with the hash chain of the customer's accounts re-verified by
`services.ledger.verify_accounts`), orders with their stored best-execution records
(`services.orders.views`), deposits and withdrawals (`services.payments`), KYC and the 24 h limits used
(`services.kyc`), sessions and devices, notifications (where that service keeps them) and the audit
trail about or by the customer.

Staff only. AML and SAR material is left out of the audit section unless the caller asks for it
(`include_compliance`, for compliance staff): support staff talk to customers and must not be able to
tip them off.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from models.customer_view import (
    AuditRow,
    ChainCheck,
    CustomerHit,
    CustomerView,
    DeviceRow,
    KycSubmissionRow,
    LedgerTrail,
    OrderRow,
    Profile,
    SessionRow,
)
from models.market import BestExecutionRecord
from models.users import User
from services import account_views, audit, kyc, payments
from services.auth import sessions as auth_sessions
from services.errors import DomainError
from services.ledger import Ledger, verify_accounts
from services.orders.views import list_orders

SECTION_ROWS = 20
SEARCH_ROWS = 25
COMPLIANCE_ACTIONS = ("aml.%", "sar.%", "screening.%", "freeze.%", "account.freeze%", "account.unfreeze%")


class CustomerNotFound(DomainError):
    """No user with that id. Search by email instead."""

    default_code = "not_found"
    status = 404


_HIT_COLUMNS = "id, email, first_name, last_name, status, kyc_tier, created_at"


async def search(engine: AsyncEngine, query: str) -> list[CustomerHit]:
    """Customers whose id is `query`, or whose email or name contains it (case-insensitive), newest first."""
    q = query.strip()
    if not q:
        return []
    try:
        exact: uuid.UUID | None = uuid.UUID(q)
    except ValueError:
        exact = None
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {_HIT_COLUMNS} FROM users WHERE id = :id OR email ILIKE :p "
                    "OR (coalesce(first_name, '') || ' ' || coalesce(last_name, '')) ILIKE :p "
                    "ORDER BY (id = :id) DESC, created_at DESC LIMIT :n"
                ),
                {"id": exact, "p": pattern, "n": SEARCH_ROWS},
            )
        ).all()
    return [CustomerHit.model_validate(r._mapping) for r in rows]


async def find_id(engine: AsyncEngine, ref: str) -> uuid.UUID:
    """The user named by `ref`: their id, or their exact email (case-insensitive); CustomerNotFound else."""
    ref = ref.strip()
    try:
        return (await _profile(engine, uuid.UUID(ref))).id
    except ValueError:
        pass
    async with engine.connect() as conn:
        found = (
            await conn.execute(text("SELECT id FROM users WHERE lower(email) = lower(:e)"), {"e": ref})
        ).scalar_one_or_none()
    if found is None:
        raise CustomerNotFound(f"no customer {ref!r}")
    return uuid.UUID(str(found))


async def view(
    engine: AsyncEngine,
    ledger: Ledger,
    user_id: uuid.UUID,
    *,
    include_compliance: bool = False,
    ledger_cursor: str | None = None,
) -> CustomerView:
    """Every section of the customer screen (`ledger_cursor`: an older page of the ledger trail)."""
    profile = await _profile(engine, user_id)
    return CustomerView(
        profile=profile,
        kyc=await _kyc_submissions(engine, user_id),
        limits=(await kyc.overview(engine, user_id, [])).limits,
        balances=(await account_views.balances(ledger=ledger, user_id=user_id)).balances,
        ledger=await ledger_trail(engine, ledger, user_id, cursor=ledger_cursor),
        orders=await _orders(engine, user_id),
        deposits=(await payments.list_deposits(engine, user_id=user_id, limit=SECTION_ROWS)).deposits,
        withdrawals=(
            await payments.list_withdrawals(engine, user_id=user_id, limit=SECTION_ROWS)
        ).withdrawals,
        sessions=await _sessions(engine, user_id),
        devices=await _devices(engine, user_id),
        notifications=await _notifications(engine, user_id),
        audit=await _audit(engine, user_id, include_compliance=include_compliance),
    )


async def record_view(
    engine: AsyncEngine, *, staff_id: uuid.UUID, user_id: uuid.UUID, ip: str | None
) -> None:
    """Audit that a staff member opened a customer's data (who looked at whom, from where)."""
    async with engine.begin() as conn:
        await audit.record(
            conn, "staff.customer.viewed", actor_id=staff_id, actor_type="staff", target_type="user",
            target_id=user_id, ip=ip,
        )  # fmt: skip


async def ledger_trail(
    engine: AsyncEngine, ledger: Ledger, user_id: uuid.UUID, *, cursor: str | None = None
) -> LedgerTrail:
    """The customer's newest entries (as the customer's own history shows them) and the chain check of
    every one of their accounts: each entry's hash, links, sequence and running balance recomputed."""
    page = await account_views.ledger_history(
        ledger=ledger, user_id=user_id, currency=None, limit=SECTION_ROWS, cursor=cursor
    )
    accounts = [b.account_id for b in await ledger.balances(user_id) if b.account_id is not None]
    report = await verify_accounts(engine, accounts)
    problem = report.first_problem
    return LedgerTrail(
        entries=page.entries,
        next_cursor=page.next_cursor,
        chain=ChainCheck(
            ok=report.ok,
            accounts_checked=report.accounts_checked,
            entries_checked=report.entries_checked,
            problem=None
            if problem is None
            else f"account {problem.account_id}, entry seq {problem.seq}: {problem.reason}",
        ),
    )


# --- sections ------------------------------------------------------------------------------------


async def _profile(engine: AsyncEngine, user_id: uuid.UUID) -> Profile:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    f"SELECT {_HIT_COLUMNS}, phone, roles, email_verified, twofa_enabled, last_login "
                    "FROM users WHERE id = :u"
                ),
                {"u": user_id},
            )
        ).first()
    if row is None:
        raise CustomerNotFound(f"no user {user_id}")
    return Profile.model_validate(row._mapping)


async def _kyc_submissions(engine: AsyncEngine, user_id: uuid.UUID) -> list[KycSubmissionRow]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, tier, status, vendor_result, created_at FROM kyc_submissions "
                    "WHERE user_id = :u ORDER BY created_at DESC LIMIT :n"
                ),
                {"u": user_id, "n": SECTION_ROWS},
            )
        ).all()
    return [KycSubmissionRow.model_validate(r._mapping) for r in rows]


async def _orders(engine: AsyncEngine, user_id: uuid.UUID) -> list[OrderRow]:
    """The newest orders, each with the router's stored record (staff see the venues' own words)."""
    page = await list_orders(engine=engine, user_id=user_id, limit=SECTION_ROWS)
    ids = [o.id for o in page.orders]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT id, execution_record FROM orders WHERE id = ANY(:ids) AND user_id = :u"),
                {"ids": ids, "u": user_id},
            )
        ).all()
    records = {r[0]: r[1] for r in rows}
    return [
        OrderRow(
            order=o,
            execution=BestExecutionRecord.model_validate(records[o.id]) if records.get(o.id) else None,
        )
        for o in page.orders
    ]


async def _sessions(engine: AsyncEngine, user_id: uuid.UUID) -> list[SessionRow]:
    """The customer's live sessions, as `services.auth.sessions` lists them for the customer."""
    async with AsyncSession(engine) as session:
        user = await session.get(User, user_id)
        if user is None:
            return []
        live = await auth_sessions.list_sessions(session, user)
    return [
        SessionRow(
            id=s.id,
            ip=s.ip,
            user_agent=s.user_agent,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            expires_at=s.expires_at,
        )  # fmt: skip
        for s in live
    ]


async def _devices(engine: AsyncEngine, user_id: uuid.UUID) -> list[DeviceRow]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT fingerprint, user_agent, first_seen_at, last_seen_at FROM known_devices "
                    "WHERE user_id = :u ORDER BY last_seen_at DESC NULLS LAST LIMIT :n"
                ),
                {"u": user_id, "n": SECTION_ROWS},
            )
        ).all()
    return [DeviceRow.model_validate(r._mapping) for r in rows]


async def _notifications(engine: AsyncEngine, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The customer's notifications with each channel's delivery status, once the notification service's
    tables exist (they arrive with that service); until then none."""
    async with engine.connect() as conn:
        present = (
            await conn.execute(
                text(
                    "SELECT to_regclass('notification_outbox') IS NOT NULL "
                    "AND to_regclass('notification_deliveries') IS NOT NULL"
                )
            )
        ).scalar_one()
        if not present:
            return []
        rows = (
            await conn.execute(
                text(
                    "SELECT o.event, o.created_at, coalesce(jsonb_object_agg(d.channel, d.status) "
                    "FILTER (WHERE d.id IS NOT NULL), '{}'::jsonb) AS channels "
                    "FROM notification_outbox o LEFT JOIN notification_deliveries d ON d.outbox_id = o.id "
                    "WHERE o.user_id = :u GROUP BY o.id ORDER BY o.created_at DESC LIMIT :n"
                ),
                {"u": user_id, "n": SECTION_ROWS},
            )
        ).all()
    return [{"event": r.event, "created_at": r.created_at, "channels": r.channels} for r in rows]


async def _audit(engine: AsyncEngine, user_id: uuid.UUID, *, include_compliance: bool) -> list[AuditRow]:
    """Audit rows about the customer or by them, newest first; compliance's own actions only on request."""
    hide = "" if include_compliance else " AND NOT (action LIKE ANY(:hidden))"
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, created_at, actor_id, actor_type, action, target_type, target_id, ip, "
                    "details FROM audit_log "
                    "WHERE (actor_id = :u OR (target_type = 'user' AND target_id = :uid))"
                    f"{hide} ORDER BY created_at DESC LIMIT :n"
                ),
                {"u": user_id, "uid": str(user_id), "hidden": list(COMPLIANCE_ACTIONS), "n": 50},
            )
        ).all()
    return [AuditRow.model_validate(r._mapping) for r in rows]

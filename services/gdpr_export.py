"""What a subject-access export holds (UK GDPR Art. 15, docs/architecture.md §11): the customer's own data,
section by section, read with an allowlist of columns.

Every section is a fixed list of columns and rows of strings (or None), so the JSON and the CSV copies
are the same values (`services/gdpr_archive.py` writes both). Amounts are strings at their asset's
scale, times ISO 8601 in UTC, nested values JSON text.

Deliberately left out, so that nothing tips a customer off (POCA 2002 s.333A): every `aml_*` table,
sanctions screening subjects, matches and dismissals, a withdrawal's `flagged` mark, a KYC submission's
vendor result, rejection reason and reviewer, the audit log (it names staff and internal reasons), and
any free text staff wrote. Columns are chosen one by one here; a new column of an exported table is not
exported until it is added to its section.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import SCALES
from models.kyc import KycStatus, Tier1In, Tier3In
from models.money import plain
from services import kyc as kyc_service

Row = dict[str, str | None]


@dataclass(frozen=True)
class Section:
    """One part of the export: `name` is the file name (`json/<name>.json`, `csv/<name>.csv`)."""

    name: str
    columns: tuple[str, ...]
    rows: list[Row]
    note: str = ""


# --- value formatting --------------------------------------------------------------------------------


def amount(value: Decimal | None, currency: str | None) -> str | None:
    """An amount at its currency's scale (exactly as stored when the currency is not one we list)."""
    if value is None:
        return None
    return plain(value, SCALES.get(currency or "", 0))


def when(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def as_text(value: Any) -> str | None:
    """Any other value as text: None stays None, structures become JSON."""
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return when(value)
    return str(value)


# Where a money column's currency comes from, for `amount` (a row is a result row of the section's query).
def _currency(r: Any) -> str:
    return str(r.currency)


def _base(r: Any) -> str:
    return str(r.symbol).partition("-")[0]


def _quote(r: Any) -> str:
    return str(r.symbol).partition("-")[2]


def _fee_currency(r: Any) -> str | None:
    return None if r.fee_currency is None else str(r.fee_currency)


def _gbp(r: Any) -> str:
    return "GBP"


CurrencyOf = Callable[[Any], str | None]


async def _table(
    conn: AsyncConnection, name: str, user_id: uuid.UUID, sql: str, money: dict[str, CurrencyOf] | None = None
) -> Section:
    """A section straight from one query: its columns are the query's (named with `AS` where the export's
    name differs from ours), every value as text, the `money` columns at their currency's scale."""
    result = await conn.execute(text(sql), {"u": user_id})
    columns = tuple(result.keys())
    out: list[Row] = []
    for r in result.all():
        row = dict(zip(columns, map(as_text, r), strict=True))
        for column, currency_of in (money or {}).items():
            row[column] = amount(r._mapping[column], currency_of(r))
        out.append(row)
    return Section(name, columns, out)


async def _rows(conn: AsyncConnection, sql: str, user_id: uuid.UUID) -> Sequence[Any]:
    return (await conn.execute(text(sql), {"u": user_id})).all()


# --- the sections --------------------------------------------------------------------------------------


async def profile(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "profile",
        user_id,
        "SELECT id, email, first_name, last_name, phone, status, kyc_tier, email_verified, twofa_enabled, "
        "created_at, last_login FROM users WHERE id = :u",
    )


# What the customer typed into a KYC form; the rest of `details` is ours (vendor image ids and the like).
_SUBMITTED_KEYS = frozenset(Tier1In.model_fields) | frozenset(Tier3In.model_fields)


def _customer_message(status: str) -> str | None:
    """The status as the customer sees it in the app (never a screening reason)."""
    try:
        return kyc_service.customer_message(KycStatus(status)) or None
    except ValueError:
        return None


async def kyc(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    rows = await _rows(
        conn,
        "SELECT id, tier, status, details, created_at, updated_at FROM kyc_submissions "
        "WHERE user_id = :u ORDER BY created_at, id",
        user_id,
    )
    columns = ("id", "tier", "status", "message", "submitted", "created_at", "updated_at")
    out = [
        {
            "id": str(r.id),
            "tier": str(r.tier),
            "status": r.status,
            "message": _customer_message(r.status),
            "submitted": as_text({k: v for k, v in (r.details or {}).items() if k in _SUBMITTED_KEYS}),
            "created_at": when(r.created_at),
            "updated_at": when(r.updated_at),
        }
        for r in rows
    ]
    return Section("kyc", columns, out)


async def balances(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "balances",
        user_id,
        "SELECT currency, balance, available_balance AS available, reserved_balance AS reserved "
        "FROM accounts WHERE kind = 'customer' AND user_id = :u ORDER BY currency",
        {"balance": _currency, "available": _currency, "reserved": _currency},
    )


async def ledger(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "ledger",
        user_id,
        "SELECT e.id, e.created_at, e.currency, e.amount, e.balance_after, e.reference_type, e.reference_id, "
        "e.transaction_id, e.seq, e.hash FROM ledger_entries e JOIN accounts a ON a.id = e.account_id "
        "WHERE a.kind = 'customer' AND a.user_id = :u ORDER BY e.created_at, e.currency, e.seq",
        {"amount": _currency, "balance_after": _currency},
    )


async def orders(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "orders",
        user_id,
        "SELECT id, symbol, side, type, status, amount, quote_amount, price, filled_amount, "
        "filled_quote_amount, average_fill_price, total_fee, fee_currency, notional_gbp, "
        "routed_to_provider AS venue, reject_reason, created_at, filled_at, cancelled_at FROM orders "
        "WHERE user_id = :u ORDER BY created_at, id",
        {
            "amount": _base,
            "quote_amount": _quote,
            "price": _quote,
            "filled_amount": _base,
            "filled_quote_amount": _quote,
            "average_fill_price": _quote,
            "total_fee": _fee_currency,
            "notional_gbp": _gbp,
        },  # fmt: skip
    )


async def trades(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "trades",
        user_id,
        "SELECT id, order_id, symbol, side, amount, price, fee, fee_currency, provider AS venue, executed_at "
        "FROM trades WHERE user_id = :u ORDER BY executed_at, id",
        {"amount": _base, "price": _quote, "fee": _fee_currency},
    )


async def deposits(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "deposits",
        user_id,
        "SELECT id, currency, amount, status, payment_method, reference, created_at, confirmed_at "
        "FROM deposits WHERE user_id = :u ORDER BY created_at, id",
        {"amount": _currency},
    )


async def withdrawals(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    # The columns the customer's own withdrawal list shows (services/payments/queries.py); not `flagged`.
    return await _table(
        conn,
        "withdrawals",
        user_id,
        "SELECT id, currency, amount, fee, status, reason, destination_type, "
        "destination_address AS destination, tx_hash, created_at, completed_at FROM withdrawals "
        "WHERE user_id = :u ORDER BY created_at, id",
        {"amount": _currency, "fee": _currency},
    )


async def bank_accounts(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "bank_accounts",
        user_id,
        "SELECT id, holder_name, sort_code, account_number, status, created_at, confirmed_at "
        "FROM bank_accounts WHERE user_id = :u ORDER BY created_at, id",
    )


async def withdrawal_addresses(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    return await _table(
        conn,
        "withdrawal_addresses",
        user_id,
        "SELECT id, currency, address, tag, label, created_at, removed_at FROM withdrawal_addresses "
        "WHERE user_id = :u ORDER BY created_at, id",
    )


async def sessions(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    # Not the refresh-token hash or the device fingerprint: secrets of ours, not data about the customer.
    return await _table(
        conn,
        "sessions",
        user_id,
        "SELECT id, created_at, last_used_at, expires_at, revoked_at, revoked_reason, ip, user_agent "
        "FROM auth_sessions WHERE user_id = :u ORDER BY created_at, id",
    )


NOTIFICATIONS_TABLE = "user_notifications"


async def notifications(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    """The customer's in-app notifications (the notifications area's `user_notifications`), when that
    table exists in this database; before it does, the section is empty and says so."""
    columns = ("id", "category", "title", "body", "created_at", "read_at")
    exists = (
        await conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": NOTIFICATIONS_TABLE})
    ).scalar()
    if not exists:
        return Section("notifications", columns, [], note="no notification feed in this installation yet")
    return await _table(
        conn,
        "notifications",
        user_id,
        f"SELECT id, category, title, body, created_at, read_at FROM {NOTIFICATIONS_TABLE} "
        "WHERE user_id = :u ORDER BY created_at, id",
    )


async def consents(conn: AsyncConnection, user_id: uuid.UUID) -> Section:
    """What the customer agreed to and declared: the risk warning, their investor category with its
    declaration, and every appropriateness assessment with their answers."""
    columns = ("kind", "version", "given_at", "outcome", "detail")
    out: list[Row] = []
    gates = (
        await conn.execute(
            text(
                "SELECT risk_warning_version, risk_warning_acknowledged_at, cooling_off_completed_at, "
                "category, "
                "declaration, categorised_at FROM first_trade_gates WHERE user_id = :u"
            ),
            {"u": user_id},
        )
    ).first()
    if gates is not None and gates.risk_warning_acknowledged_at is not None:
        out.append(
            {
                "kind": "risk_warning",
                "version": gates.risk_warning_version,
                "given_at": when(gates.risk_warning_acknowledged_at),
                "outcome": "acknowledged",
                "detail": as_text({"cooling_off_completed_at": when(gates.cooling_off_completed_at)}),
            }
        )
    if gates is not None and gates.categorised_at is not None:
        out.append(
            {
                "kind": "investor_category",
                "version": None,
                "given_at": when(gates.categorised_at),
                "outcome": gates.category,
                "detail": as_text(gates.declaration),
            }
        )
    for a in await _rows(
        conn,
        "SELECT questionnaire_version, answers, correct, total, passed, created_at "
        "FROM appropriateness_attempts "
        "WHERE user_id = :u ORDER BY created_at, id",
        user_id,
    ):
        out.append(
            {
                "kind": "appropriateness_assessment",
                "version": a.questionnaire_version,
                "given_at": when(a.created_at),
                "outcome": "passed" if a.passed else "failed",
                "detail": as_text({"answers": a.answers, "correct": a.correct, "total": a.total}),
            }
        )
    return Section("consents", columns, out)


SECTIONS: tuple[Callable[[AsyncConnection, uuid.UUID], Awaitable[Section]], ...] = (
    profile, kyc, balances, ledger, orders, trades, deposits, withdrawals, bank_accounts,
    withdrawal_addresses, sessions, notifications, consents,
)  # fmt: skip


async def collect(engine: AsyncEngine, user_id: uuid.UUID) -> list[Section]:
    """Every section, read in one snapshot so balances, ledger and orders agree with each other."""
    async with engine.connect() as conn:
        c = await conn.execution_options(isolation_level="REPEATABLE READ")
        await c.execute(text("SET TRANSACTION READ ONLY"))
        return [await section(c, user_id) for section in SECTIONS]

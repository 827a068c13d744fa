"""What a database change notification names, and the one load per batch that turns it into messages.

The writers' transactions announce a change with `pg_notify('live_updates', '<kind>:<user id>:<row id>')`
(triggers, migration 0032): ids only, so a payload never carries a balance or a name, stays far under
PostgreSQL's 8,000-byte limit, and identical ones inside one transaction are folded into one by the server.
The listener (`services.live_updates`) drops changes for customers with no connection in this process
before loading anything, then loads each kind for the whole batch in ONE query (`id = ANY(:ids)`) - the cost
of a change is independent of how many sockets the customer has open.

Message shapes are the WebSocket's (api/routes/ws.py): every amount a string at its asset's scale.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.market import split_symbol
from models.money import money
from models.notifications_api import NotificationOut
from services.orders.views import ORDER_COLUMNS, order_out

CHANNEL = "live_updates"


class ChangeKind(StrEnum):
    """The first field of a payload: which table changed (the trigger's argument in migration 0032)."""

    ORDER = "o"
    ACCOUNT = "a"
    TRADE = "t"
    NOTIFICATION = "n"
    SESSION_REVOKED = "s"
    USER_STATUS = "u"


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    user_id: uuid.UUID
    row_id: uuid.UUID


def parse(payload: str) -> Change | None:
    """A payload as the triggers write it; anything else (another writer's channel use) is ignored."""
    parts = payload.split(":")
    if len(parts) != 3:
        return None
    try:
        return Change(ChangeKind(parts[0]), uuid.UUID(parts[1]), uuid.UUID(parts[2]))
    except ValueError:
        return None


@dataclass(frozen=True)
class Update:
    """One message for one customer, with what it is about (for de-duplication per connection)."""

    user_id: uuid.UUID
    kind: ChangeKind
    key: Any  # order id, currency, trade id, notification id
    state: Any  # what makes a re-send news: the order's status and fills, the balance triple, None
    message: dict[str, Any]

    @cached_property
    def text(self) -> str:
        """The message as the frame's text, encoded once for all of the customer's sockets."""
        return json.dumps(self.message, separators=(",", ":"))


TRADE_COLUMNS = "id, order_id, user_id, symbol, side, amount, price, fee, fee_currency, executed_at"
ACCOUNT_COLUMNS = "id, user_id, currency, balance, available_balance, reserved_balance"
NOTIFICATION_COLUMNS = "id, user_id, category, title, body, created_at, read_at"


def balance_update(row: Mapping[Any, Any]) -> Update:
    currency = row["currency"]
    state = (row["balance"], row["available_balance"], row["reserved_balance"])
    message = {
        "type": "balance",
        "currency": currency,
        "balance": money(row["balance"], currency),
        "available": money(row["available_balance"], currency),
        "reserved": money(row["reserved_balance"], currency),
    }
    return Update(row["user_id"], ChangeKind.ACCOUNT, currency, state, message)


def order_update(row: Mapping[Any, Any]) -> Update:
    state = (row["status"], row["filled_amount"], row["total_fee"], row["updated_at"])
    message = {"type": "order", "order": order_out(dict(row)).model_dump(mode="json")}
    return Update(row["user_id"], ChangeKind.ORDER, row["id"], state, message)


def trade_update(t: Mapping[Any, Any]) -> Update:
    base, quote = split_symbol(t["symbol"])
    message = {
        "type": "trade",
        "trade": {
            "id": str(t["id"]),
            "order_id": str(t["order_id"]),
            "symbol": t["symbol"],
            "side": t["side"],
            "amount": money(t["amount"], base),
            "price": money(t["price"], quote),
            "fee": money(t["fee"], t["fee_currency"]),
            "fee_currency": t["fee_currency"],
            "executed_at": t["executed_at"].isoformat(),
        },
    }
    return Update(t["user_id"], ChangeKind.TRADE, t["id"], None, message)


def notification_update(n: Mapping[Any, Any]) -> Update:
    """An in-app feed row (`user_notifications`) as `GET /notifications` lists it."""
    item = NotificationOut(
        id=n["id"],
        category=n["category"],
        title=n["title"],
        body=n["body"],
        created_at=n["created_at"],
        read_at=n["read_at"],
    )
    message = {"type": "notification", "notification": item.model_dump(mode="json")}
    return Update(n["user_id"], ChangeKind.NOTIFICATION, n["id"], None, message)


_LOADS: dict[ChangeKind, tuple[str, Any]] = {
    ChangeKind.ORDER: (f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY(:ids)", order_update),
    ChangeKind.ACCOUNT: (
        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ANY(:ids) AND kind = 'customer'",
        balance_update,
    ),
    ChangeKind.TRADE: (f"SELECT {TRADE_COLUMNS} FROM trades WHERE id = ANY(:ids)", trade_update),
    ChangeKind.NOTIFICATION: (
        f"SELECT {NOTIFICATION_COLUMNS} FROM user_notifications WHERE id = ANY(:ids)",
        notification_update,
    ),
}

# Trades and feed rows come before the order and balances they explain, as the polling feed sent them.
_ORDER_OF_KINDS = (ChangeKind.ORDER, ChangeKind.TRADE, ChangeKind.ACCOUNT, ChangeKind.NOTIFICATION)


async def load_updates(engine: AsyncEngine, changes: Iterable[Change]) -> list[Update]:
    """The current rows behind `changes` (one query per kind present), as messages, in a stable order."""
    ids: dict[ChangeKind, set[uuid.UUID]] = {}
    for change in changes:
        if change.kind in _LOADS:
            ids.setdefault(change.kind, set()).add(change.row_id)
    if not ids:
        return []
    out: list[Update] = []
    async with engine.connect() as conn:
        for kind in _ORDER_OF_KINDS:
            if kind not in ids:
                continue
            sql, shape = _LOADS[kind]
            rows = (await conn.execute(text(sql), {"ids": list(ids[kind])})).mappings().all()
            out.extend(shape(row) for row in rows)
    return out


async def load_since(engine: AsyncEngine, users: Iterable[uuid.UUID], lookback: timedelta) -> list[Update]:
    """Catch-up after the listener lost its connection: everything the triggers may have announced while
    nobody listened, for the customers connected here - their account rows, and orders, trades and feed
    rows written in the last `lookback` by the database's clock (one query per kind for all of them).
    Connections drop what they already saw, so looking back generously costs nothing but bytes."""
    user_ids = list(set(users))
    if not user_ids:
        return []
    out: list[Update] = []
    params = {"u": user_ids, "lookback": lookback}
    queries = (
        (
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ANY(:u) AND updated_at > now() - :lookback",
            order_update,
        ),
        (
            f"SELECT {TRADE_COLUMNS} FROM trades WHERE user_id = ANY(:u) AND executed_at > now() - :lookback",
            trade_update,
        ),
        (
            f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE kind = 'customer' AND user_id = ANY(:u)",
            balance_update,
        ),
        (
            f"SELECT {NOTIFICATION_COLUMNS} FROM user_notifications "
            "WHERE user_id = ANY(:u) AND created_at > now() - :lookback",
            notification_update,
        ),
    )
    async with engine.connect() as conn:
        for sql, shape in queries:
            rows = (await conn.execute(text(sql), params)).mappings().all()
            out.extend(shape(row) for row in rows)
    return out


async def load_balances(engine: AsyncEngine, user_id: uuid.UUID) -> list[Update]:
    """A new connection's snapshot: the customer's current balances (once, at connect).

    `FOR SHARE` waits for a writer that changed an account before the customer was registered as listening
    (its trigger saw no listener, so it will not announce): the snapshot then shows its result."""
    async with engine.begin() as conn:
        rows = (
            (
                await conn.execute(
                    text(
                        f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE kind = 'customer' AND user_id = :u "
                        "FOR SHARE"
                    ),
                    {"u": user_id},
                )
            )
            .mappings()
            .all()
        )
    return [balance_update(row) for row in rows]


async def register_listeners(engine: AsyncEngine, user_ids: Iterable[uuid.UUID], pid: int) -> None:
    """List `user_ids` as listened for by the listener backend `pid` (the triggers then announce them)."""
    ids = list(set(user_ids))
    if not ids:
        return
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO live_listeners (user_id, listener_pid) "
                "SELECT u, :pid FROM unnest(CAST(:u AS uuid[])) u ON CONFLICT DO NOTHING"
            ),
            {"u": ids, "pid": pid},
        )


async def unregister_listener(engine: AsyncEngine, user_id: uuid.UUID | None, pid: int) -> None:
    """Remove `user_id`'s registration by listener `pid` (None: all of that listener's)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "DELETE FROM live_listeners WHERE listener_pid = :pid "
                "AND (CAST(:u AS uuid) IS NULL OR user_id = CAST(:u AS uuid))"
            ),
            {"u": user_id, "pid": pid},
        )


async def forget_dead_listeners(engine: AsyncEngine) -> None:
    """Rows of listener backends that no longer exist (a process or server that died unannounced)."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "DELETE FROM live_listeners WHERE listener_pid NOT IN (SELECT pid FROM pg_stat_activity "
                "WHERE pid IS NOT NULL)"
            )
        )


async def live_sessions(
    engine: AsyncEngine, session_ids: Iterable[uuid.UUID], allowed_statuses: Iterable[str]
) -> set[uuid.UUID]:
    """Which of `session_ids` are still live (not revoked, their user allowed in): one query for the
    whole process, after a reconnect, in place of each connection re-checking its own."""
    ids = list(set(session_ids))
    if not ids:
        return set()
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT s.id FROM auth_sessions s JOIN users u ON u.id = s.user_id "
                "WHERE s.id = ANY(:ids) AND s.revoked_at IS NULL AND u.status = ANY(:ok)"
            ),
            {"ids": ids, "ok": list(allowed_statuses)},
        )
        return {r[0] for r in rows}


async def user_allowed(
    engine: AsyncEngine, user_ids: Iterable[uuid.UUID], allowed: Iterable[str]
) -> set[uuid.UUID]:
    """Which of `user_ids` may still log in (a status change announced with kind `u`)."""
    ids = list(set(user_ids))
    if not ids:
        return set()
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id FROM users WHERE id = ANY(:ids) AND status = ANY(:ok)"),
            {"ids": ids, "ok": list(allowed)},
        )
        return {r[0] for r in rows}

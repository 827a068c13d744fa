"""Holds and their owners: a hold exists only while the order or withdrawal it reserves for is live.

A workflow task can run late: a worker frozen by a GC pause, a stopped VM or a partition wakes up and
replays a task whose workflow another worker has long finished, and its local activities run again.
Three rules keep such a replay from reserving money for good:

1. A hold is created only for a live owner, checked in the transaction that creates it, with the
   owner's row locked (`lock_live_order`): the finishing transaction updates that row, so the two
   are serialised and the late one sees the owner finished.
2. Finishing an owner releases every active hold that references it (`release_all`), in the same
   transaction as the final status, not only the hold id the workflow remembers.
3. A periodic audit (`orphaned_holds`) lists any active hold whose owner is final or missing, for ops:
   a hold that escaped rules 1 and 2 (or predates them) is reported, never silently kept.

Owners are named by the hold's `reference_type` and `reference_id`: orders (`ORDER`, the orders table)
and withdrawals (`withdrawal`, the withdrawals table). No Temporal and no HTTP here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.order_flow import FINAL_STATUSES, OrderStatus
from models.payments import FINAL_WITHDRAWAL_STATUSES
from services.ledger import HoldNotActive, Ledger

ORDER_HOLD = "ORDER"
WITHDRAWAL_HOLD = "withdrawal"
_FINAL_ORDER = sorted(s.value for s in FINAL_STATUSES)
_FINAL_WITHDRAWAL = sorted(s.value for s in FINAL_WITHDRAWAL_STATUSES)


class OwnerFinished(Exception):
    """The order or withdrawal is already final (or unknown): reserve nothing for it. Not an error of
    the request; the caller should stop (the owner's outcome stands)."""

    def __init__(self, owner: str, status: str | None) -> None:
        super().__init__(
            f"{owner} is {status.lower() if status else 'unknown'}: nothing may be reserved for it"
        )
        self.status = status


async def lock_live_order(conn: AsyncConnection, order_id: uuid.UUID) -> OrderStatus:
    """Lock the order's row for this transaction and return its status; `OwnerFinished` if it is final.

    `FOR NO KEY UPDATE`: conflicts with the finishing UPDATE (so a late reserve waits for it, then sees
    the final status), but not with the foreign-key checks of rows that reference the order.
    """
    status = (
        await conn.execute(text("SELECT status FROM orders WHERE id = :o FOR NO KEY UPDATE"), {"o": order_id})
    ).scalar()
    if status is None or status in _FINAL_ORDER:
        raise OwnerFinished(f"order {order_id}", status)
    return OrderStatus(status)


async def lock_live_withdrawal(conn: AsyncConnection, withdrawal_id: uuid.UUID) -> str:
    """The same rule for a withdrawal's hold: lock its row, refuse if it is final."""
    status = (
        await conn.execute(
            text("SELECT status FROM withdrawals WHERE id = :w FOR NO KEY UPDATE"), {"w": withdrawal_id}
        )
    ).scalar()
    if status is None or status in _FINAL_WITHDRAWAL:
        raise OwnerFinished(f"withdrawal {withdrawal_id}", status)
    return str(status)


async def release_all(
    conn: AsyncConnection, ledger: Ledger, reference_type: str, reference_id: uuid.UUID
) -> list[uuid.UUID]:
    """Release every active hold of one owner, in the caller's transaction; returns the ids released.

    Call it in the transaction that makes the owner final, after whatever the owner consumed from
    its holds has been committed in that transaction."""
    rows = await conn.execute(
        text(
            "SELECT id FROM holds WHERE reference_type = :t AND reference_id = :r AND status = 'active' "
            "ORDER BY id FOR UPDATE"
        ),
        {"t": reference_type, "r": reference_id},
    )
    released = []
    for (hold_id,) in rows.all():
        try:
            if await ledger.release(hold_id, conn=conn):
                released.append(hold_id)
        except HoldNotActive:
            pass
    return released


@dataclass(frozen=True)
class OrphanedHold:
    """An active hold whose owner is final (or does not exist): money reserved for nothing."""

    hold_id: uuid.UUID
    reference_type: str
    reference_id: uuid.UUID
    currency: str
    remaining: Decimal
    owner_status: str | None  # None: no such owner


async def orphaned_holds(conn: AsyncConnection, *, limit: int = 1000) -> list[OrphanedHold]:
    """Active holds whose owner is final or missing (oldest first, at most `limit`)."""
    rows = await conn.execute(
        text(
            "SELECT h.id, h.reference_type, h.reference_id, h.currency, h.amount - h.consumed, "
            "       coalesce(o.status, w.status) "
            "FROM holds h "
            "LEFT JOIN orders o ON h.reference_type = :order_t AND o.id = h.reference_id "
            "LEFT JOIN withdrawals w ON h.reference_type = :withdrawal_t AND w.id = h.reference_id "
            "WHERE h.status = 'active' AND ("
            "  (h.reference_type = :order_t AND (o.id IS NULL OR o.status = ANY(:final_o))) OR "
            "  (h.reference_type = :withdrawal_t AND (w.id IS NULL OR w.status = ANY(:final_w))) OR "
            "  h.reference_type NOT IN (:order_t, :withdrawal_t)) "
            "ORDER BY h.created_at LIMIT :limit"
        ),
        {
            "order_t": ORDER_HOLD,
            "withdrawal_t": WITHDRAWAL_HOLD,
            "final_o": _FINAL_ORDER,
            "final_w": _FINAL_WITHDRAWAL,
            "limit": limit,
        },
    )
    return [OrphanedHold(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows.all()]

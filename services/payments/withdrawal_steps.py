"""The withdrawal saga's steps on our side: status changes, completing the books from the hold,
releasing it, and the four-eyes judgement of staff decisions."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import FIAT
from models.payments import WithdrawalStatus
from services import holds
from services.alerts import audit
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.payments import withdrawal_notices
from services.payments.ids import ZERO


def withdrawal_house_account(provider: str, currency: str) -> str:
    return HouseAccount.BANK_CASH if currency in FIAT else HouseAccount.provider(provider)


async def set_withdrawal_status(
    conn: AsyncConnection,
    withdrawal_id: uuid.UUID,
    status: WithdrawalStatus,
    *,
    reason: str | None = None,
    provider_ref: str | None = None,
    tx_hash: str | None = None,
    hold_id: uuid.UUID | None = None,
) -> None:
    """Move the row to `status` unless it is already final (a replayed step can't undo an outcome); the
    customer's notification of the new status is written in the same transaction."""
    result = await conn.execute(
        text(
            "UPDATE withdrawals SET status = CAST(:s AS varchar), reason = nullif(coalesce(:r, reason), ''), "
            "provider_ref = coalesce(:pr, provider_ref), tx_hash = coalesce(:th, tx_hash), "
            "hold_id = coalesce(:h, hold_id), updated_at = now(), "
            "completed_at = CASE WHEN CAST(:s AS text) = 'COMPLETED' THEN now() ELSE completed_at END "
            "WHERE id = :id AND status NOT IN ('COMPLETED', 'FAILED', 'REJECTED', 'CANCELLED') "
            "RETURNING user_id, currency, amount"
        ),
        {
            "s": status.value,
            "r": reason,
            "pr": provider_ref,
            "th": tx_hash,
            "h": hold_id,
            "id": withdrawal_id,
        },
    )
    row = result.first()
    if row is not None:
        await withdrawal_notices.status_changed(
            conn, withdrawal_id, row.user_id, row.currency, row.amount, status
        )


async def record_provider_ref(engine: AsyncEngine, withdrawal_id: uuid.UUID, provider_ref: str) -> None:
    """Keep the venue's reference for our withdrawal as soon as its answer names it: a venue that keeps
    no id of ours (Kraken's `refid`) can be asked about the withdrawal only by this. The first one stays."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE withdrawals SET provider_ref = :r, updated_at = now() "
                "WHERE id = :id AND provider_ref IS NULL"
            ),
            {"r": provider_ref, "id": withdrawal_id},
        )


async def withdrawal_provider_ref(engine: AsyncEngine, withdrawal_id: uuid.UUID) -> str | None:
    """The venue's reference recorded for our withdrawal (None: its send never answered with one)."""
    async with engine.connect() as conn:
        ref = (
            await conn.execute(
                text("SELECT provider_ref FROM withdrawals WHERE id = :id"), {"id": withdrawal_id}
            )
        ).scalar()
    return str(ref) if ref else None


async def complete_withdrawal(
    engine: AsyncEngine,
    ledger: Ledger,
    *,
    withdrawal_id: uuid.UUID,
    user_id: uuid.UUID,
    currency: str,
    amount: Decimal,
    fee: Decimal,
    hold_id: uuid.UUID,
    provider: str,
    provider_ref: str | None,
    tx_hash: str | None,
    network_fee: Decimal = ZERO,
    network_fee_payer: Literal["house", "customer"] = "house",
) -> uuid.UUID:
    """Commit the hold and mark COMPLETED: the amount to the house account it leaves from, our fee to
    revenue, and the venue's network fee (taken from our omnibus on top of the amount) booked too, so
    `provider:<venue>` moves exactly as the omnibus did and a clean day reconciles to zero.

    Network fee `house`: the customer pays `fee`; the network fee is a cost against fee revenue (as the
    venues' trading fees are). `customer`: the customer pays the network fee instead of `fee`, at most the
    `fee` held (any excess is the house's); the unused rest of the hold is released and the row's fee
    shows what was charged."""
    network_fee = max(network_fee, ZERO)
    charged = fee if network_fee_payer == "house" else min(fee, network_fee)
    revenue = charged - network_fee
    async with engine.begin() as conn:
        account = await ledger.customer_account(user_id, currency, conn)
        # The row first (as the reserve step locks it first): a late reserve waits, then sees it final.
        if charged != fee:
            await conn.execute(
                text("UPDATE withdrawals SET fee = :f WHERE id = :id AND status <> 'COMPLETED'"),
                {"f": charged, "id": withdrawal_id},
            )
        await set_withdrawal_status(
            conn, withdrawal_id, WithdrawalStatus.COMPLETED, provider_ref=provider_ref, tx_hash=tx_hash
        )
        legs = [
            Leg(account, currency, -(amount + charged), hold_id=hold_id),
            Leg(House(withdrawal_house_account(provider, currency)), currency, amount + network_fee),
        ]
        if revenue != 0:
            legs.append(Leg(House(HouseAccount.FEE_REVENUE), currency, revenue))
        result = await ledger.commit(
            hold_id,
            Posting(
                reference_type="withdrawal",
                reference_id=withdrawal_id,
                step="complete",
                kind="withdrawal",
                legs=legs,
                metadata={
                    "provider": provider,
                    "provider_ref": provider_ref,
                    "tx_hash": tx_hash,
                    "network_fee": str(network_fee),
                    "network_fee_payer": network_fee_payer,
                },
            ),
            conn,
        )
        # Any other hold of this withdrawal (a replay that raced the first reserve) ends with it.
        await holds.release_all(conn, ledger, holds.WITHDRAWAL_HOLD, withdrawal_id)
    return result.transaction_id


async def release_withdrawal(
    engine: AsyncEngine,
    ledger: Ledger,
    *,
    withdrawal_id: uuid.UUID,
    hold_id: uuid.UUID | None,
    status: WithdrawalStatus,
    reason: str,
) -> None:
    """Give the held funds back and record the final status (FAILED, REJECTED or CANCELLED).

    The status first (its row lock orders this after any late reserve of the same withdrawal), then the
    saga's own hold (a committed one raises: the money left, ops decide), then every other active hold
    of the withdrawal (`holds.release_all`), all in one transaction."""
    async with engine.begin() as conn:
        await set_withdrawal_status(conn, withdrawal_id, status, reason=reason)
        if hold_id is not None:
            await ledger.release(hold_id, conn)
        await holds.release_all(conn, ledger, holds.WITHDRAWAL_HOLD, withdrawal_id)


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    code: str
    detail: str


async def judge_decision(
    engine: AsyncEngine,
    *,
    withdrawal_id: uuid.UUID,
    requester_id: uuid.UUID,
    approver_id: uuid.UUID,
    decision: str,
    reason: str,
    proof: str | None = "no proof checked",
) -> Verdict:
    """Four eyes, checked against the users table whatever the channel (admin API or Temporal signal):
    the decision must carry proof that this staff user made it (`proof` is None when the caller verified
    the decision token, else why it failed: a bare id in a signal proves nothing), the approver must be an
    active user with the `approver` role and not the requester. Accepted decisions are recorded once
    (unique per withdrawal, approver and decision); every attempt is audited."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(text("SELECT roles, status FROM users WHERE id = :u"), {"u": approver_id})
        ).first()
        if proof is not None:
            verdict = Verdict(False, "unproven", f"the decision carries no valid proof: {proof}")
        elif approver_id == requester_id:
            verdict = Verdict(False, "self_approval", "the requester cannot decide on their own withdrawal")
        elif row is None:
            verdict = Verdict(False, "unknown_approver", "no such user")
        elif "approver" not in (row[0] or []) or row[1] != "ACTIVE":
            verdict = Verdict(False, "not_an_approver", "only active users with the approver role count")
        else:
            verdict = Verdict(True, decision, reason)
        if verdict.accepted:
            await conn.execute(
                text(
                    "INSERT INTO withdrawal_approvals (id, withdrawal_id, approver_id, decision, reason) "
                    "VALUES (:id, :w, :a, :d, :r) "
                    "ON CONFLICT (withdrawal_id, approver_id, decision) DO NOTHING"
                ),
                {"id": uuid.uuid4(), "w": withdrawal_id, "a": approver_id, "d": decision, "r": reason},
            )
            if decision == "approve":
                await conn.execute(
                    text(
                        "UPDATE withdrawals SET approved_by = :a, approved_at = now(), updated_at = now() "
                        "WHERE id = :w"
                    ),
                    {"a": approver_id, "w": withdrawal_id},
                )
        await audit(
            conn,
            f"withdrawal.{decision}" if verdict.accepted else f"withdrawal.{decision}.refused",
            actor_id=approver_id if row is not None and proof is None else None,
            actor_type="staff",
            target_type="withdrawal",
            target_id=str(withdrawal_id),
            reason=reason,
            claimed_approver=str(approver_id),
            refusal=None if verdict.accepted else verdict.code,
        )
    return verdict


async def staff_problem(conn: AsyncConnection, staff_id: uuid.UUID | None, *, role: str) -> str | None:
    """None if `staff_id` is an active user with `role`, else why not."""
    if staff_id is None:
        return "no staff user named"
    row = (await conn.execute(text("SELECT roles, status FROM users WHERE id = :u"), {"u": staff_id})).first()
    if row is None:
        return "no such user"
    if role not in (row[0] or []) or row[1] != "ACTIVE":
        return f"only active users with the {role} role may do this"
    return None

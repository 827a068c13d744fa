"""Manual ledger adjustments by maker-checker (docs/architecture.md §C.8, §7: multi-signature for
critical operations).

A correction to the books is proposed by one staff member (the maker, ops) with a reason, and posted only
when a different staff member (the checker, an approver) approves it. Both steps need the staff member's
TOTP at the edge (API/console) and are written to the audit log in the same transaction as the change.

Why it is safe:
- The proposal is checked in full before it is stored (each amount at its currency's scale and non-zero,
  the legs zero-sum, every account exists), so a proposal that is stored can be posted; a bad one is a
  422 and nothing is written.
- Approval posts one new journal through `services.ledger` (never an edit: entries are append-only), keyed
  `adjustment:<proposal id>:post`. The proposal row is locked while it is decided, and the ledger's key is
  unique, so a repeated or concurrent approval posts nothing more and returns the first outcome.
- The checker is re-read from the users table (active, approver role) and must be neither the maker nor
  a customer whose account the adjustment moves; the table's CHECK refuses a checker equal to the maker.
- A refused posting (e.g. the customer's balance cannot cover a debit) rolls the whole decision back: the
  proposal stays PROPOSED.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.adjustments import (
    AdjustmentLeg,
    AdjustmentOut,
    AdjustmentProposalIn,
    AdjustmentStatus,
)
from models.assets import PrecisionError, UnknownCurrency, check_scale
from services import audit
from services.errors import DomainError
from services.ledger import House, Ledger, Leg, Posting

REFERENCE_TYPE = "adjustment"
MAKER_ROLES = frozenset({"ops"})
CHECKER_ROLES = frozenset({"approver"})


class InvalidAdjustment(DomainError):
    """The proposal cannot be posted as written (amount, balance, account). Correct it; nothing was stored."""

    default_code = "invalid_adjustment"
    status = 422


class AdjustmentNotFound(DomainError):
    """No such proposal."""

    default_code = "not_found"
    status = 404


class AdjustmentDecided(DomainError):
    """The proposal was already decided the other way (or a repeat differs from the first).
    Nothing changed."""

    default_code = "adjustment_decided"
    status = 409


class FourEyesRefused(DomainError):
    """This staff member may not take this step (their own proposal, an account of their own, or not the
    role). Another staff member must; the refusal is audited."""

    default_code = "four_eyes"
    status = 403


_COLUMNS = (
    "id, currency, legs, reason, status, maker_id, checker_id, decision_reason, transaction_id, "
    "created_at, decided_at"
)


def _out(r: Any) -> AdjustmentOut:
    emails = getattr(r, "_mapping", {})
    return AdjustmentOut(
        id=r.id,
        currency=r.currency,
        legs=[AdjustmentLeg.model_validate(leg) for leg in r.legs],
        reason=r.reason,
        status=AdjustmentStatus(r.status),
        maker_id=r.maker_id,
        checker_id=r.checker_id,
        decision_reason=r.decision_reason,
        transaction_id=r.transaction_id,
        created_at=r.created_at,
        decided_at=r.decided_at,
        maker_email=emails.get("maker_email"),
        checker_email=emails.get("checker_email"),
    )


# --- checks --------------------------------------------------------------------------------------


def checked_amounts(currency: str, legs: list[AdjustmentLeg]) -> list[Decimal]:
    """Each leg's amount as a Decimal, at the currency's scale (never rounded), non-zero, summing to zero,
    and no account named twice; otherwise InvalidAdjustment naming the field at fault."""
    amounts: list[Decimal] = []
    seen: set[str] = set()
    for i, leg in enumerate(legs):
        field = f"body.legs.{i}.amount"
        try:
            amount = check_scale(currency, Decimal(leg.amount))
        except UnknownCurrency as e:
            raise InvalidAdjustment(f"we hold no currency {currency}", field="body.currency") from e
        except PrecisionError as e:
            raise InvalidAdjustment(str(e), field=field) from e
        except InvalidOperation as e:
            raise InvalidAdjustment(f"{leg.amount!r} is not an amount", field=field) from e
        if amount == 0:
            raise InvalidAdjustment("an amount must be non-zero", field=field)
        account = f"user:{leg.user_id}" if leg.user_id else f"house:{leg.house}"
        if account in seen:
            raise InvalidAdjustment(f"{account} is named twice; combine its legs", field=f"body.legs.{i}")
        seen.add(account)
        amounts.append(amount)
    total = sum(amounts, Decimal(0))
    if total != 0:
        raise InvalidAdjustment(f"the legs must sum to zero; they sum to {total}", field="body.legs")
    return amounts


async def _check_accounts(conn: AsyncConnection, currency: str, legs: list[AdjustmentLeg]) -> None:
    """Every customer exists and every house account already exists in the currency (a typo must not
    open a new house account)."""
    for i, leg in enumerate(legs):
        if leg.user_id is not None:
            row = (await conn.execute(text("SELECT 1 FROM users WHERE id = :u"), {"u": leg.user_id})).first()
            if row is None:
                raise InvalidAdjustment(f"no customer {leg.user_id}", field=f"body.legs.{i}.user_id")
        else:
            row = (
                await conn.execute(
                    text(
                        "SELECT 1 FROM accounts WHERE kind = 'house' AND code = :c AND currency = :cur "
                        "LIMIT 1"
                    ),
                    {"c": leg.house, "cur": currency},
                )
            ).first()
            if row is None:
                raise InvalidAdjustment(
                    f"no house account {leg.house} in {currency}", field=f"body.legs.{i}.house"
                )


async def _staff_problem(
    conn: AsyncConnection, staff_id: uuid.UUID, roles: frozenset[str], legs: list[AdjustmentLeg]
) -> str | None:
    """None if `staff_id` is an active user with one of `roles` whose own account is not moved;
    else why not."""
    if any(leg.user_id == staff_id for leg in legs):
        return "a staff member cannot adjust their own account"
    row = (await conn.execute(text("SELECT roles, status FROM users WHERE id = :u"), {"u": staff_id})).first()
    if row is None or row.status != "ACTIVE" or not roles & set(row.roles or []):
        return f"only active staff with the {'/'.join(sorted(roles))} role may do this"
    return None


async def _refused(
    engine: AsyncEngine,
    action: str,
    *,
    staff_id: uuid.UUID,
    adjustment_id: uuid.UUID,
    why: str,
    ip: str | None,
) -> None:
    """Audit a refused step in a transaction of its own (the step itself wrote nothing)."""
    async with engine.begin() as conn:
        await audit.record(
            conn, action, actor_id=staff_id, actor_type="staff", target_type="ledger_adjustment",
            target_id=adjustment_id, details={"refusal": why}, ip=ip,
        )  # fmt: skip


# --- the steps -----------------------------------------------------------------------------------


async def propose(
    engine: AsyncEngine, *, maker_id: uuid.UUID, proposal: AdjustmentProposalIn, ip: str | None = None
) -> AdjustmentOut:
    """Store a checked proposal (audited `adjustment.proposed`). A repeat with the same `id` and content
    returns the first proposal; the same `id` with other content is AdjustmentDecided (409)."""
    checked_amounts(proposal.currency, proposal.legs)
    adjustment_id = proposal.id or uuid.uuid4()
    legs_json = [leg.model_dump(mode="json", exclude_none=True) for leg in proposal.legs]
    async with engine.begin() as conn:
        why = await _staff_problem(conn, maker_id, MAKER_ROLES, proposal.legs)
        if why is not None:
            raise FourEyesRefused(why)
        await _check_accounts(conn, proposal.currency, proposal.legs)
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO ledger_adjustments (id, currency, legs, reason, status, maker_id) "
                    "VALUES (:id, :cur, CAST(:legs AS jsonb), :reason, 'PROPOSED', :maker) "
                    f"ON CONFLICT (id) DO NOTHING RETURNING {_COLUMNS}"
                ),
                {
                    "id": adjustment_id,
                    "cur": proposal.currency,
                    "legs": json.dumps(legs_json),
                    "reason": proposal.reason,
                    "maker": maker_id,
                },  # fmt: skip
            )
        ).first()
        if inserted is None:
            first = await _row(conn, adjustment_id, lock=False)
            same = (first.currency, first.legs, first.reason, first.maker_id) == (
                proposal.currency, legs_json, proposal.reason, maker_id,
            )  # fmt: skip
            if not same:
                raise AdjustmentDecided("a different proposal was made with this id")
            return _out(first)
        after = {
            "status": "PROPOSED",
            "currency": proposal.currency,
            "legs": legs_json,
            "reason": proposal.reason,
        }
        await audit.record(
            conn, "adjustment.proposed", actor_id=maker_id, actor_type="staff",
            target_type="ledger_adjustment", target_id=adjustment_id, ip=ip,
            details={"before": None, "after": after},
        )  # fmt: skip
        return _out(inserted)


async def _row(conn: AsyncConnection, adjustment_id: uuid.UUID, *, lock: bool) -> Any:
    row = (
        await conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM ledger_adjustments WHERE id = :id" + (" FOR UPDATE" if lock else "")
            ),
            {"id": adjustment_id},
        )
    ).first()
    if row is None:
        raise AdjustmentNotFound(f"no adjustment {adjustment_id}")
    return row


async def approve(
    engine: AsyncEngine,
    ledger: Ledger,
    *,
    adjustment_id: uuid.UUID,
    checker_id: uuid.UUID,
    reason: str,
    ip: str | None = None,
) -> AdjustmentOut:
    """Post the proposal as one new balanced journal and mark it POSTED (audited `adjustment.posted`).

    Idempotent on the proposal: once POSTED, any further approval returns it unchanged and posts nothing.
    A rejected proposal is AdjustmentDecided; the maker (or a customer moved by it, or a user without the
    approver role) is FourEyesRefused, audited `adjustment.approve.refused`."""
    try:
        async with engine.begin() as conn:
            row = await _row(conn, adjustment_id, lock=True)
            if row.status == AdjustmentStatus.POSTED:
                return _out(row)
            if row.status == AdjustmentStatus.REJECTED:
                raise AdjustmentDecided("this proposal was rejected; propose it again if it is still needed")
            legs = await _checked_legs(conn, row, checker_id, "approve")
            posting = Posting(
                reference_type=REFERENCE_TYPE,
                reference_id=adjustment_id,
                step="post",
                kind="adjustment",
                created_by=checker_id,
                metadata={"maker_id": str(row.maker_id), "checker_id": str(checker_id), "reason": row.reason},
                legs=[await _ledger_leg(conn, ledger, row.currency, leg) for leg in legs],
            )
            result = await ledger.post(posting, conn)
            done = (
                await conn.execute(
                    text(
                        "UPDATE ledger_adjustments SET status = 'POSTED', checker_id = :c, "
                        "decision_reason = :r, transaction_id = :tx, decided_at = now() "
                        f"WHERE id = :id RETURNING {_COLUMNS}"
                    ),
                    {"c": checker_id, "r": reason, "tx": result.transaction_id, "id": adjustment_id},
                )
            ).one()
            after = {"status": "POSTED", "transaction_id": str(result.transaction_id)}
            await audit.record(
                conn, "adjustment.posted", actor_id=checker_id, actor_type="staff",
                target_type="ledger_adjustment", target_id=adjustment_id, ip=ip,
                details={"before": {"status": "PROPOSED"}, "after": after, "maker_id": str(row.maker_id),
                         "reason": reason},
            )  # fmt: skip
            return _out(done)
    except FourEyesRefused as e:
        await _refused(
            engine, "adjustment.approve.refused", staff_id=checker_id, adjustment_id=adjustment_id,
            why=e.detail, ip=ip,
        )  # fmt: skip
        raise


async def _checked_legs(
    conn: AsyncConnection, row: Any, checker_id: uuid.UUID, verb: str
) -> list[AdjustmentLeg]:
    """The proposal's legs, once `checker_id` is shown to be a second person allowed to decide it
    (FourEyesRefused otherwise)."""
    legs = [AdjustmentLeg.model_validate(leg) for leg in row.legs]
    why = (
        f"the maker cannot {verb} their own proposal"
        if checker_id == row.maker_id
        else await _staff_problem(conn, checker_id, CHECKER_ROLES, legs)
    )
    if why is not None:
        raise FourEyesRefused(why)
    return legs


async def _ledger_leg(conn: AsyncConnection, ledger: Ledger, currency: str, leg: AdjustmentLeg) -> Leg:
    amount = Decimal(leg.amount)
    if leg.house is not None:
        return Leg(account=House(leg.house), currency=currency, amount=amount)
    assert leg.user_id is not None
    return Leg(
        account=await ledger.customer_account(leg.user_id, currency, conn), currency=currency, amount=amount
    )


async def reject(
    engine: AsyncEngine,
    *,
    adjustment_id: uuid.UUID,
    checker_id: uuid.UUID,
    reason: str,
    ip: str | None = None,
) -> AdjustmentOut:
    """Refuse the proposal: it is kept as REJECTED with the checker and reason (audited
    `adjustment.rejected`); nothing is posted. Idempotent; a posted proposal is AdjustmentDecided."""
    try:
        async with engine.begin() as conn:
            row = await _row(conn, adjustment_id, lock=True)
            if row.status == AdjustmentStatus.REJECTED:
                return _out(row)
            if row.status == AdjustmentStatus.POSTED:
                raise AdjustmentDecided("this proposal was already posted; correct it with a new proposal")
            await _checked_legs(conn, row, checker_id, "decide")
            done = (
                await conn.execute(
                    text(
                        "UPDATE ledger_adjustments SET status = 'REJECTED', checker_id = :c, "
                        f"decision_reason = :r, decided_at = now() WHERE id = :id RETURNING {_COLUMNS}"
                    ),
                    {"c": checker_id, "r": reason, "id": adjustment_id},
                )
            ).one()
            await audit.record(
                conn, "adjustment.rejected", actor_id=checker_id, actor_type="staff",
                target_type="ledger_adjustment", target_id=adjustment_id, ip=ip,
                details={"before": {"status": "PROPOSED"}, "after": {"status": "REJECTED"},
                         "maker_id": str(row.maker_id), "reason": reason},
            )  # fmt: skip
            return _out(done)
    except FourEyesRefused as e:
        await _refused(
            engine, "adjustment.reject.refused", staff_id=checker_id, adjustment_id=adjustment_id,
            why=e.detail, ip=ip,
        )  # fmt: skip
        raise


# --- reads ---------------------------------------------------------------------------------------


async def get(engine: AsyncEngine, adjustment_id: uuid.UUID) -> AdjustmentOut:
    async with engine.connect() as conn:
        return _out(await _row(conn, adjustment_id, lock=False))


async def listing(
    engine: AsyncEngine, *, status: AdjustmentStatus | None = None, limit: int = 100
) -> list[AdjustmentOut]:
    """Proposals, newest first (optionally of one status), with the maker's and checker's emails."""
    columns = ", ".join(f"a.{c.strip()}" for c in _COLUMNS.split(","))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    f"SELECT {columns}, m.email AS maker_email, c.email AS checker_email "
                    "FROM ledger_adjustments a JOIN users m ON m.id = a.maker_id "
                    "LEFT JOIN users c ON c.id = a.checker_id "
                    "WHERE CAST(:s AS text) IS NULL OR a.status = :s "
                    "ORDER BY a.created_at DESC, a.id LIMIT :n"
                ),
                {"s": status.value if status else None, "n": max(1, min(limit, 500))},
            )
        ).all()
    return [_out(r) for r in rows]

"""Treasury: moving the house's crypto float between venues (issue 20 item 8, docs/architecture.md §5 "auto
top-up").

Crypto comes in at one venue (customer deposits) and goes out at another (customer withdrawals), so the
float drifts from the second to the first. A float transfer withdraws from the venue with the surplus to
the other venue's deposit address; the chain carries it and the receiving venue credits it.

The books follow the money in two postings, each keyed by the transfer id (posting twice posts once):

    sent     provider:<from>  -(amount + network fee)      (house accounts are kept from the liability
             transfers:in_flight  +amount                    side: an asset up is a negative leg)
             fee_revenue      -network fee                 (a cost, as the withdrawal saga books it)
    settled  transfers:in_flight  -amount
             provider:<to>    +amount

Between the two the money is on the chain: no venue shows it and `transfers:in_flight` holds it, so the
venues' sum and the books agree, and reconciliation lists the transfer by id. When the receiving venue has
credited and we have not booked it yet, reconciliation explains the difference with the transfer
(`in_flight_transfers`). No Temporal and no HTTP here: activities/treasury.py calls these functions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.treasury import (
    IN_FLIGHT_ACCOUNT,
    OPEN_STATUSES,
    RESOLUTIONS_BY_STAGE,
    FloatTransferInput,
    ResolutionOutcomeKind,
    TransferResolution,
    TransferStatus,
)
from services.errors import DomainError
from services.ledger import House, HouseAccount, Ledger, Leg, Posting
from services.payments import audit, staff_problem

ZERO = Decimal(0)
REFERENCE = "float_transfer"
CRYPTO_VENUES = ("binance", "kraken")  # venues we hold crypto float at and can withdraw from


class TransferRefused(DomainError):
    """The transfer request cannot be taken (same venue, unknown venue, a non-positive amount, an open
    transfer of the currency already, an approval by the same person twice). Tell the staff member why;
    nothing was written."""

    default_code = "transfer_refused"
    status = 409


def venue_client_id(transfer_id: uuid.UUID) -> str:
    """Our id for the withdrawal at the sending venue (Binance `withdrawOrderId`): one per transfer, so a
    repeated send is the venue's duplicate, and an unknown outcome is looked up by it."""
    return f"ft{transfer_id.hex[:30]}"


def approvals_required(currency: str, amount: Decimal, limits: Mapping[str, Decimal]) -> int:
    """Two different staff above the currency's limit (no limit configured: always two); none below."""
    limit = limits.get(currency)
    return 2 if limit is None or amount > limit else 0


# --- the transfer record ----------------------------------------------------------------------------


async def record(engine: AsyncEngine, data: FloatTransferInput) -> str:
    """Write the transfer once (keyed by its id); returns its status (a retry finds the first row)."""
    if data.from_venue == data.to_venue:
        raise TransferRefused("a transfer needs two different venues")
    if data.amount <= 0:
        raise TransferRefused("the amount must be positive")
    status = TransferStatus.AWAITING_APPROVAL if data.approvals_required else TransferStatus.APPROVED
    async with engine.begin() as conn:
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO float_transfers (id, currency, from_venue, to_venue, amount, status, "
                    "approvals_required, trigger, requested_by, reason) VALUES (:id, :c, :f, :t, :a, :s, "
                    ":n, :tr, :by, :why) ON CONFLICT (id) DO NOTHING RETURNING status"
                ),
                {
                    "id": data.transfer_id, "c": data.currency, "f": data.from_venue, "t": data.to_venue,
                    "a": data.amount, "s": status.value, "n": data.approvals_required, "tr": data.trigger,
                    "by": data.requested_by, "why": data.reason,
                },
            )
        ).first()  # fmt: skip
        if inserted is None:
            row = (
                await conn.execute(
                    text("SELECT status FROM float_transfers WHERE id = :id"), {"id": data.transfer_id}
                )
            ).one()
            return str(row[0])
        await audit(
            conn, "float_transfer.requested", actor_id=data.requested_by,
            actor_type="staff" if data.requested_by else "system", target_type="float_transfer",
            target_id=str(data.transfer_id), currency=data.currency, amount=str(data.amount),
            from_venue=data.from_venue, to_venue=data.to_venue, trigger=data.trigger,
        )  # fmt: skip
    return status.value


async def set_status(
    engine: AsyncEngine, transfer_id: uuid.UUID, status: TransferStatus, **fields: Any
) -> None:
    """Move the transfer to `status`, with any of address / venue_withdrawal_id / tx_hash / fee /
    attention. Idempotent (setting the same values twice changes nothing)."""
    allowed = {"address", "venue_withdrawal_id", "tx_hash", "fee", "attention"}
    sets = ", ".join(f"{k} = :{k}" for k in fields if k in allowed)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE float_transfers SET status = :s, updated_at = now()"
                + (f", {sets}" if sets else "")
                + " WHERE id = :id"
            ),
            {"s": status.value, "id": transfer_id, **{k: v for k, v in fields.items() if k in allowed}},
        )
        if status in (
            TransferStatus.NEEDS_ATTENTION,
            TransferStatus.REJECTED,
            TransferStatus.SETTLED,
            TransferStatus.RETURNED,
        ):
            await audit(
                conn, f"float_transfer.{status.value.lower()}", actor_id=None, actor_type="system",
                target_type="float_transfer", target_id=str(transfer_id), attention=fields.get("attention"),
            )  # fmt: skip


async def get(engine: AsyncEngine, transfer_id: uuid.UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT * FROM float_transfers WHERE id = :id"), {"id": transfer_id})
        ).first()
    return dict(row._mapping) if row is not None else None


async def listing(engine: AsyncEngine, limit: int = 200) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT * FROM float_transfers ORDER BY created_at DESC LIMIT :n"), {"n": limit}
            )
        ).all()
    return [dict(r._mapping) for r in rows]


async def open_transfer(engine: AsyncEngine, currency: str) -> uuid.UUID | None:
    """An unfinished transfer of `currency`, if any: the monitor never starts a second one on top."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT id FROM float_transfers WHERE currency = :c AND status = ANY(CAST(:s AS text[])) "
                    "LIMIT 1"
                ),
                {"c": currency, "s": list(OPEN_STATUSES)},
            )
        ).first()
    return row[0] if row else None


# --- maker-checker ----------------------------------------------------------------------------------


async def add_approval(engine: AsyncEngine, transfer_id: uuid.UUID, staff_id: uuid.UUID) -> int:
    """Record one staff approval (the proof was verified by the caller); returns the distinct approvers.
    The person who requested the transfer cannot approve it; approving twice counts once."""
    async with engine.begin() as conn:
        row = (
            await conn.execute(
                text("SELECT requested_by FROM float_transfers WHERE id = :id FOR UPDATE"),
                {"id": transfer_id},
            )
        ).one()
        if row[0] is not None and row[0] == staff_id:
            raise TransferRefused("the staff member who requested the transfer cannot approve it")
        inserted = (
            await conn.execute(
                text(
                    "INSERT INTO float_transfer_approvals (id, transfer_id, staff_id) VALUES (:id, :t, :s) "
                    "ON CONFLICT (transfer_id, staff_id) DO NOTHING RETURNING 1"
                ),
                {"id": uuid.uuid4(), "t": transfer_id, "s": staff_id},
            )
        ).first()
        if inserted is not None:
            await audit(
                conn, "float_transfer.approved", actor_id=staff_id, actor_type="staff",
                target_type="float_transfer", target_id=str(transfer_id),
            )  # fmt: skip
        n = (
            await conn.execute(
                text("SELECT count(DISTINCT staff_id) FROM float_transfer_approvals WHERE transfer_id = :t"),
                {"t": transfer_id},
            )
        ).scalar_one()
    return int(n)


# --- the books --------------------------------------------------------------------------------------


async def book_sent(
    ledger: Ledger, *, transfer_id: uuid.UUID, from_venue: str, currency: str, amount: Decimal, fee: Decimal
) -> None:
    """The sending venue sent it: provider:<from> pays amount + network fee; the amount is in flight."""
    legs = [
        Leg(House(HouseAccount.provider(from_venue)), currency, amount + fee),
        Leg(House(IN_FLIGHT_ACCOUNT), currency, -amount),
    ]
    if fee:
        legs.append(Leg(House(HouseAccount.FEE_REVENUE), currency, -fee))
    await ledger.post(
        Posting(
            reference_type=REFERENCE, reference_id=transfer_id, step="sent", kind="float_transfer_sent",
            legs=legs,
        )
    )  # fmt: skip


async def book_settled(
    ledger: Ledger, *, transfer_id: uuid.UUID, to_venue: str, currency: str, amount: Decimal
) -> None:
    """The receiving venue credited it: the in-flight amount is now at provider:<to>."""
    await _land(
        ledger, transfer_id=transfer_id, step="settled", venue=to_venue, currency=currency, amount=amount
    )


async def book_returned(
    ledger: Ledger, *, transfer_id: uuid.UUID, from_venue: str, currency: str, amount: Decimal
) -> None:
    """Ops established the chain returned the transfer to the sending venue: the in-flight amount is back
    at provider:<from> (the network fee stays spent)."""
    await _land(
        ledger, transfer_id=transfer_id, step="returned", venue=from_venue, currency=currency, amount=amount
    )


async def _land(
    ledger: Ledger, *, transfer_id: uuid.UUID, step: str, venue: str, currency: str, amount: Decimal
) -> None:
    """The in-flight amount arrives at a venue (transfers:in_flight -> provider:<venue>), once per step."""
    await ledger.post(
        Posting(
            reference_type=REFERENCE, reference_id=transfer_id, step=step, kind=f"float_transfer_{step}",
            legs=[
                Leg(House(IN_FLIGHT_ACCOUNT), currency, amount),
                Leg(House(HouseAccount.provider(venue)), currency, -amount),
            ],
        )
    )  # fmt: skip


# --- ops' word on a transfer in NEEDS_ATTENTION -------------------------------------------------------


def resolution_problem(stage: str | None, r: TransferResolution) -> tuple[str, str] | None:
    """Why this resolution cannot answer the saga's wait (code, why), or None if it can (pure)."""
    if stage is None:
        return "not_waiting", "the transfer is not waiting for ops"
    if r.outcome not in RESOLUTIONS_BY_STAGE.get(stage, ()):
        wanted = ", ".join(o.value for o in RESOLUTIONS_BY_STAGE.get(stage, ()))
        return "wrong_stage", f"the transfer waits for one of: {wanted}"
    if not r.note.strip():
        return "incomplete", "say what was established, and with whom"
    if r.outcome is ResolutionOutcomeKind.SENT and (not r.tx_hash or r.fee is None or r.fee < 0):
        return "incomplete", "a sent withdrawal needs its chain transaction and network fee"
    return None


async def audit_resolution(
    engine: AsyncEngine, transfer_id: uuid.UUID, stage: str | None, r: TransferResolution, proof_problem: str
) -> tuple[str, str]:
    """Judge one staff member's resolution (the proof was checked by the caller: `proof_problem` is why it
    failed, "" if it held) and audit it either way. Returns (code, why); code `accepted` counts it."""
    code, why = ("unproven", proof_problem) if proof_problem else ("accepted", "")
    async with engine.begin() as conn:
        if code == "accepted":
            problem = await staff_problem(conn, r.staff_id, role="ops")
            if problem is not None:
                code, why = "not_ops", problem
        if code == "accepted":
            code, why = resolution_problem(stage, r) or (code, why)
        await audit(
            conn, "float_transfer.resolution" + ("" if code == "accepted" else ".refused"),
            actor_id=None if code in ("unproven", "not_ops") else r.staff_id, actor_type="staff",
            target_type="float_transfer", target_id=str(transfer_id), claimed_actor=str(r.staff_id),
            outcome=r.outcome.value, stage=stage, note=r.note, tx_hash=r.tx_hash,
            fee=None if r.fee is None else str(r.fee), refusal=None if code == "accepted" else code,
            why=why or None,
        )  # fmt: skip
    return code, why


# --- the float monitor's plan ---------------------------------------------------------------------


@dataclass(frozen=True)
class TopUp:
    currency: str
    from_venue: str
    to_venue: str
    amount: Decimal


def plan_top_ups(
    balances: Mapping[str, Mapping[str, Decimal]],
    *,
    short: Iterable[str],
    thresholds: Mapping[str, Decimal],
    targets: Mapping[str, Decimal],
    busy: set[str],
) -> list[TopUp]:
    """Pure: for each venue in `short` whose float is below its threshold, a transfer up to the target
    from the venue holding the most of it, if that venue can give it and stay at or above its own
    threshold. Currencies with a transfer already open (`busy`) are left alone."""
    out = []
    for to_venue in short:
        for currency, threshold in sorted(thresholds.items()):
            have = balances.get(to_venue, {}).get(currency, ZERO)
            if currency in busy or have >= threshold:
                continue
            amount = max(targets.get(currency, threshold), threshold) - have
            donors = sorted(
                ((b.get(currency, ZERO), v) for v, b in balances.items() if v != to_venue), reverse=True
            )
            if donors and donors[0][0] - amount >= threshold:
                out.append(TopUp(currency, donors[0][1], to_venue, amount))
                busy.add(currency)
    return out


# --- what reconciliation needs -----------------------------------------------------------------------


@dataclass(frozen=True)
class TransferInFlight:
    id: uuid.UUID
    currency: str
    from_venue: str
    to_venue: str
    amount: Decimal
    status: str
    tx_hash: str | None
    fee: Decimal | None = None


async def transfers_in_flight(engine: AsyncEngine) -> list[TransferInFlight]:
    """Transfers sent (the venue has our withdrawal) and not settled: the ones reconciliation explains."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT t.id, t.currency, t.from_venue, t.to_venue, t.amount, t.status, t.tx_hash, t.fee "
                    "FROM float_transfers t WHERE t.status IN ('SENDING', 'IN_FLIGHT', 'NEEDS_ATTENTION') "
                    "AND t.venue_withdrawal_id IS NOT NULL"
                )
            )
        ).all()
    return [TransferInFlight(*r) for r in rows]


async def transfer_tx_hashes(engine: AsyncEngine) -> set[str]:
    """Every chain transaction of a float transfer: a venue deposit with one of these is house money
    moving between venues, never a customer's deposit (the deposit poller and reconciliation skip it)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT tx_hash FROM float_transfers WHERE tx_hash IS NOT NULL"))
        ).all()
    return {normal_tx(r[0]) for r in rows}


async def pending_transfer_addresses(engine: AsyncEngine) -> set[tuple[str, str]]:
    """(venue, address) of transfers sent whose chain tx we do not know yet: a deposit arriving there is
    held back from the poller until the transfer knows its transaction."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT to_venue, address FROM float_transfers WHERE address IS NOT NULL AND tx_hash IS "
                    "NULL AND status IN ('SENDING', 'IN_FLIGHT', 'NEEDS_ATTENTION')"
                )
            )
        ).all()
    return {(r[0], r[1]) for r in rows}


def normal_tx(tx: str) -> str:
    return tx.lower().removeprefix("0x")


def top_up_id(venue: str, currency: str, run: str) -> uuid.UUID:
    """One id per monitor run, venue and currency: a retried plan starts the same transfer (Temporal
    rejects the duplicate workflow id)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"float-top-up:{run}:{venue}:{currency}")

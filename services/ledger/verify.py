"""Verification: recompute every account's hash chain and balances and report the first problem.

Each check is a function that returns what is wrong (or None), in the order they run:

- per entry, walking an account's chain in `seq` order: `seq` runs 1..n without gaps
  (`missing_seq`); each entry's `prev_hash` is its predecessor's hash (`broken_link`);
  `balance_after` is the running sum (`wrong_running_balance`); its `hash` matches its fields
  (`altered_entry`);
- per account, after its chain: the account row's `entry_seq` and `last_hash` match the last entry
  (`head_mismatch`), its balance is the sum of its entries (`balance_mismatch`), and reserved equals
  the unconsumed part of its active holds (`reserved_mismatch`);
- globally: every journal transaction sums to zero per currency (`unbalanced_transaction`).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ledger.posting import fmt


class VerifyProblem(BaseModel):
    account_id: uuid.UUID
    seq: int | None
    entry_id: uuid.UUID | None
    reason: str


class VerifyReport(BaseModel):
    ok: bool
    accounts_checked: int
    entries_checked: int
    first_problem: VerifyProblem | None = None


def entry_hash(
    prev_hash: str | None,
    entry_id: uuid.UUID,
    transaction_id: uuid.UUID,
    account_id: uuid.UUID,
    seq: int,
    currency: str,
    amount: Decimal,
    balance_after: Decimal,
    reference_type: str,
    reference_id: uuid.UUID,
    created_at: datetime,
) -> str:
    """The chain hash, computed exactly as the `ledger_entry_hash` SQL function does."""
    q = Decimal(1).scaleb(-18)
    parts = [
        prev_hash or "",
        str(entry_id),
        str(transaction_id),
        str(account_id),
        str(seq),
        currency,
        fmt(amount.quantize(q)),
        fmt(balance_after.quantize(q)),
        reference_type,
        str(reference_id),
        created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


@dataclass
class Chain:
    """An account's chain as walked so far: the next `seq` expected, the last hash, the running sum."""

    account_id: uuid.UUID
    expected_seq: int = 1
    prev_hash: str | None = None
    running: Decimal = Decimal(0)

    @property
    def length(self) -> int:
        return self.expected_seq - 1


@dataclass(frozen=True)
class AccountRow:
    """What the account row says about its chain, balance and holds."""

    id: uuid.UUID
    balance: Decimal
    entry_seq: int
    last_hash: str | None
    reserved: Decimal
    held: Decimal  # the unconsumed part of its active holds


# --- per entry (`e` is a ledger_entries row; `chain` is the walk up to the entry before it) ------


def missing_seq(chain: Chain, e: Any) -> VerifyProblem | None:
    if e.seq == chain.expected_seq:
        return None
    reason = f"entry seq {chain.expected_seq} is missing (found {e.seq})"
    return VerifyProblem(account_id=chain.account_id, seq=chain.expected_seq, entry_id=None, reason=reason)


def broken_link(chain: Chain, e: Any) -> VerifyProblem | None:
    if e.prev_hash == chain.prev_hash:
        return None
    reason = "prev_hash does not match the previous entry"
    return VerifyProblem(account_id=chain.account_id, seq=e.seq, entry_id=e.id, reason=reason)


def wrong_running_balance(chain: Chain, e: Any) -> VerifyProblem | None:
    running = chain.running + e.amount
    if e.balance_after == running:
        return None
    reason = f"balance_after {e.balance_after} but entries sum to {running}"
    return VerifyProblem(account_id=chain.account_id, seq=e.seq, entry_id=e.id, reason=reason)


def altered_entry(chain: Chain, e: Any) -> VerifyProblem | None:
    recomputed = entry_hash(
        chain.prev_hash,
        e.id,
        e.transaction_id,
        chain.account_id,
        e.seq,
        e.currency,
        e.amount,
        e.balance_after,
        e.reference_type,
        e.reference_id,
        e.created_at,
    )
    if recomputed == e.hash:
        return None
    reason = "hash does not match the entry's contents"
    return VerifyProblem(account_id=chain.account_id, seq=e.seq, entry_id=e.id, reason=reason)


ENTRY_CHECKS: tuple[Callable[[Chain, Any], VerifyProblem | None], ...] = (
    missing_seq,
    broken_link,
    wrong_running_balance,
    altered_entry,
)


# --- per account, once its whole chain was walked ------------------------------------------------


def head_mismatch(account: AccountRow, chain: Chain) -> VerifyProblem | None:
    if chain.length == account.entry_seq and chain.prev_hash == account.last_hash:
        return None
    reason = (
        f"account says {account.entry_seq} entries ending {account.last_hash}, chain has "
        f"{chain.length} ending {chain.prev_hash}"
    )
    return VerifyProblem(account_id=account.id, seq=chain.expected_seq, entry_id=None, reason=reason)


def balance_mismatch(account: AccountRow, chain: Chain) -> VerifyProblem | None:
    if chain.running == account.balance:
        return None
    reason = f"account balance {account.balance} but entries sum to {chain.running}"
    return VerifyProblem(account_id=account.id, seq=None, entry_id=None, reason=reason)


def reserved_mismatch(account: AccountRow, chain: Chain) -> VerifyProblem | None:
    if account.reserved == account.held:
        return None
    reason = f"reserved {account.reserved} but active holds leave {account.held}"
    return VerifyProblem(account_id=account.id, seq=None, entry_id=None, reason=reason)


ACCOUNT_CHECKS: tuple[Callable[[AccountRow, Chain], VerifyProblem | None], ...] = (
    head_mismatch,
    balance_mismatch,
    reserved_mismatch,
)


# --- globally ------------------------------------------------------------------------------------


async def unbalanced_transaction(c: AsyncConnection) -> VerifyProblem | None:
    row = (
        await c.execute(
            text(
                "SELECT transaction_id FROM ledger_entries GROUP BY transaction_id, currency "
                "HAVING sum(amount) <> 0 LIMIT 1"
            )
        )
    ).first()
    if row is None:
        return None
    reason = f"journal transaction {row[0]} does not balance"
    return VerifyProblem(account_id=uuid.UUID(int=0), seq=None, entry_id=None, reason=reason)


# --- the walk ------------------------------------------------------------------------------------


@dataclass
class _Counts:
    accounts: int = 0
    entries: int = 0

    def report(self, problem: VerifyProblem | None) -> VerifyReport:
        return VerifyReport(
            ok=problem is None,
            accounts_checked=self.accounts,
            entries_checked=self.entries,
            first_problem=problem,
        )


async def _account_rows(c: AsyncConnection, ids: Sequence[uuid.UUID] | None = None) -> list[AccountRow]:
    rows = (
        await c.execute(
            text(
                "SELECT a.id, a.balance, a.entry_seq, a.last_hash, a.reserved_balance, "
                "coalesce((SELECT sum(h.amount - h.consumed) FROM holds h "
                "          WHERE h.account_id = a.id AND h.status = 'active'), 0) "
                "FROM accounts a WHERE CAST(:ids AS uuid[]) IS NULL OR a.id = ANY(:ids) ORDER BY a.id"
            ),
            {"ids": list(ids) if ids is not None else None},
        )
    ).all()
    return [AccountRow(*r) for r in rows]


async def _walk_chain(
    c: AsyncConnection, account: AccountRow, counts: _Counts
) -> tuple[Chain, VerifyProblem | None]:
    """Walk the account's entries in `seq` order; stop at the first entry that fails a check."""
    chain = Chain(account_id=account.id)
    result = await c.stream(
        text(
            "SELECT id, transaction_id, seq, currency, amount, balance_after, reference_type, "
            "reference_id, created_at, prev_hash, hash FROM ledger_entries "
            "WHERE account_id = :a ORDER BY seq"
        ),
        {"a": account.id},
    )
    async for e in result:
        counts.entries += 1
        for check in ENTRY_CHECKS:
            problem = check(chain, e)
            if problem is not None:
                return chain, problem
        chain.running += e.amount
        chain.prev_hash = e.hash
        chain.expected_seq += 1
    return chain, None


async def verify(engine: AsyncEngine) -> VerifyReport:
    """Recompute every account's hash chain and balances; report the first inconsistency."""
    counts = _Counts()
    async with engine.connect() as conn:
        # One snapshot for every read below: postings committed while the check runs would otherwise
        # show an account row from before them beside entries from after (a false "chain has more").
        c = await conn.execution_options(isolation_level="REPEATABLE READ")
        await c.execute(text("SET TRANSACTION READ ONLY"))
        for account in await _account_rows(c):
            counts.accounts += 1
            chain, problem = await _walk_chain(c, account, counts)
            for check in ACCOUNT_CHECKS:
                problem = problem or check(account, chain)
            if problem is not None:
                return counts.report(problem)
        return counts.report(await unbalanced_transaction(c))


async def verify_accounts(engine: AsyncEngine, account_ids: Sequence[uuid.UUID]) -> VerifyReport:
    """The per-entry and per-account checks of `verify`, on these accounts only (a customer's trail in
    the console): their chains, heads, balances and holds; the first problem, or ok."""
    counts = _Counts()
    async with engine.connect() as conn:
        c = await conn.execution_options(isolation_level="REPEATABLE READ")
        await c.execute(text("SET TRANSACTION READ ONLY"))
        for account in await _account_rows(c, account_ids):
            counts.accounts += 1
            chain, problem = await _walk_chain(c, account, counts)
            for check in ACCOUNT_CHECKS:
                problem = problem or check(account, chain)
            if problem is not None:
                return counts.report(problem)
    return counts.report(None)

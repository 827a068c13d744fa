"""Each check of `verify()` on its own: it names the first problem, and nothing on an honest chain.

The database tests (test_tamper.py) alter real entries; these cover every check, including the ones
tampering with entries cannot reach (an account row or its reserved balance out of step)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

from services.ledger.verify import (
    ACCOUNT_CHECKS,
    ENTRY_CHECKS,
    AccountRow,
    Chain,
    altered_entry,
    balance_mismatch,
    broken_link,
    entry_hash,
    head_mismatch,
    missing_seq,
    reserved_mismatch,
    wrong_running_balance,
)

D = Decimal
ACCOUNT = uuid.uuid4()


@dataclass(frozen=True)
class Row:
    """A ledger_entries row as the walk reads it."""

    id: uuid.UUID
    transaction_id: uuid.UUID
    seq: int
    currency: str
    amount: Decimal
    balance_after: Decimal
    reference_type: str
    reference_id: uuid.UUID
    created_at: datetime
    prev_hash: str | None
    hash: str


def honest_chain(amounts: list[Decimal]) -> list[Row]:
    rows: list[Row] = []
    prev, running = None, D(0)
    for seq, amount in enumerate(amounts, start=1):
        running += amount
        entry_id, tx, ref = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        at = datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC)
        h = entry_hash(prev, entry_id, tx, ACCOUNT, seq, "GBP", amount, running, "T", ref, at)
        rows.append(Row(entry_id, tx, seq, "GBP", amount, running, "T", ref, at, prev, h))
        prev = h
    return rows


def walk(rows: list[Row]) -> tuple[Chain, list[str]]:
    """Every check on every entry, as `verify` runs them; the names of the checks that fail."""
    chain, failed = Chain(account_id=ACCOUNT), []
    for e in rows:
        failed += [check.__name__ for check in ENTRY_CHECKS if check(chain, e) is not None]
        chain.running += e.amount
        chain.prev_hash = e.hash
        chain.expected_seq += 1
    return chain, failed


def test_an_honest_chain_passes_every_check() -> None:
    rows = honest_chain([D("10"), D("-3.50"), D("0.01")])
    chain, failed = walk(rows)
    assert failed == []
    account = AccountRow(ACCOUNT, D("6.51"), 3, rows[-1].hash, D("2"), D("2"))
    assert [check(account, chain) for check in ACCOUNT_CHECKS] == [None, None, None]


def test_a_gap_in_seq_names_the_missing_entry() -> None:
    rows = honest_chain([D("1"), D("2"), D("3")])
    chain = Chain(account_id=ACCOUNT, expected_seq=2, prev_hash=rows[0].hash, running=D("1"))
    problem = missing_seq(chain, rows[2])
    assert problem is not None and problem.seq == 2 and problem.entry_id is None
    assert "missing" in problem.reason


def test_a_broken_link_names_the_entry() -> None:
    rows = honest_chain([D("1"), D("2")])
    chain = Chain(account_id=ACCOUNT, expected_seq=2, prev_hash="f" * 64, running=D("1"))
    problem = broken_link(chain, rows[1])
    assert problem is not None and (problem.seq, problem.entry_id) == (2, rows[1].id)


def test_a_wrong_balance_after_names_the_entry() -> None:
    rows = honest_chain([D("1"), D("2")])
    chain = Chain(account_id=ACCOUNT, expected_seq=2, prev_hash=rows[0].hash, running=D("1"))
    problem = wrong_running_balance(chain, replace(rows[1], balance_after=D("4")))
    assert problem is not None and problem.seq == 2 and "entries sum to 3" in problem.reason


def test_an_altered_field_breaks_the_hash() -> None:
    rows = honest_chain([D("1"), D("2")])
    chain = Chain(account_id=ACCOUNT, expected_seq=2, prev_hash=rows[0].hash, running=D("1"))
    assert altered_entry(chain, rows[1]) is None
    problem = altered_entry(chain, replace(rows[1], reference_type="X"))
    assert problem is not None and problem.entry_id == rows[1].id and "hash" in problem.reason


def test_an_account_row_out_of_step_with_its_chain_is_found() -> None:
    rows = honest_chain([D("5"), D("5")])
    chain, _ = walk(rows)
    honest = AccountRow(ACCOUNT, D("10"), 2, rows[-1].hash, D("0"), D("0"))
    assert head_mismatch(replace(honest, entry_seq=3), chain) is not None
    assert head_mismatch(replace(honest, last_hash=rows[0].hash), chain) is not None
    balance = balance_mismatch(replace(honest, balance=D("11")), chain)
    assert balance is not None and "account balance 11" in balance.reason
    reserved = reserved_mismatch(replace(honest, reserved=D("1")), chain)
    assert reserved is not None and "active holds leave 0" in reserved.reason

"""The double-entry ledger: the single source of truth for customer money.

Every movement is a *posting*: a journal transaction of two or more legs that sum to zero per
currency. Positive amounts credit an account, negative amounts debit it. Customer accounts can never
go negative (checked here, in the posting function and by a CHECK constraint); house accounts are the
other side of every customer movement and may (an asset seen from the liability side).

Holds move money from an account's available part to its reserved part without posting; a hold is
`active -> committed | released`. Committing consumes it fully or partly inside a posting and
returns the rest to available in the same database transaction.

Idempotency: every operation carries a key `reference_type:reference_id:step`. The key is UNIQUE in
the database, so a retry, a replay or a concurrent duplicate returns the first result and posts
nothing; the same key with a different request is an error, never a silent second posting.

Hot house accounts: we chose **a pool of sub-accounts, set-based posting functions and group
commit**. Every trade touches the fee-revenue and provider accounts; if each were one row, concurrent
settlements of different customers would queue on that row's lock for the whole transaction, commit
flush included. Each house account is `house_account_shards` rows (64 by default) and a posting uses
the shard of its database session (backend pid modulo the shard count), so concurrent sessions
almost never meet on a house row (a random shard per posting was measured to collide far more often);
the house balance is the sum over its shards. Postings are applied by `ledger_post_batch` (migration
0008) with a fixed number of statements whatever the number of postings and legs: one finds, locks
(customer rows before house rows, each in id order: no deadlocks) and reads every account, one UPDATE
writes them, one INSERT writes the entries. Standalone postings that arrive together are sent as one
batch by the group commit (`group_commit.py`: one round trip, one commit), which is what lets many concurrent
settlements share a few database sessions. We preferred this to deferred/batched house balances
because every entry keeps an exact `balance_after` and a per-account hash chain, with no background
job to lag or fail.

Tamper evidence: each entry stores `hash = sha256(prev_hash | fields…)` chained per account (per
shard) with a gap-free `seq`; `verify()` recomputes every chain and reports the first altered or
missing entry. Entries are append-only (UPDATE/DELETE raise in the database).

The package keeps one concept per module: `posting` (the values: legs, postings, house accounts,
idempotency keys, and their validation), `errors` (the typed refusals and the SQLSTATEs they stand
for), `group_commit` (batching standalone postings), `writes` (the `Ledger` and its writes), `reads`
(balances, entries, totals, holds) and `verify` (one function per check).
"""

from services.ledger.errors import (
    CurrencyMismatch,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    LedgerError,
    UnbalancedPosting,
    UnknownAccount,
)
from services.ledger.posting import (
    AccountRef,
    HoldResult,
    House,
    HouseAccount,
    Leg,
    Posting,
    PostingResult,
    idempotency_key,
)
from services.ledger.reads import Balance, CurrencyTotals, Entry, EntryPage, HoldView
from services.ledger.verify import VerifyProblem, VerifyReport, entry_hash, verify_accounts
from services.ledger.writes import Ledger
from services.pagination import InvalidCursor  # the one cursor codec's refusal, for ledger.entries

__all__ = [
    "AccountRef",
    "Balance",
    "CurrencyMismatch",
    "CurrencyTotals",
    "Entry",
    "EntryPage",
    "HoldNotActive",
    "HoldResult",
    "HoldView",
    "House",
    "HouseAccount",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidCursor",
    "Leg",
    "Ledger",
    "LedgerError",
    "Posting",
    "PostingResult",
    "UnbalancedPosting",
    "UnknownAccount",
    "VerifyProblem",
    "VerifyReport",
    "entry_hash",
    "idempotency_key",
    "verify_accounts",
]

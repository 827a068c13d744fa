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
batch by the group commit below (one round trip, one commit), which is what lets many concurrent
settlements share a few database sessions. We preferred this to deferred/batched house balances
because every entry keeps an exact `balance_after` and a per-account hash chain, with no background
job to lag or fail.

Tamper evidence: each entry stores `hash = sha256(prev_hash | fields…)` chained per account (per
shard) with a gap-free `seq`; `verify()` recomputes every chain and reports the first altered or
missing entry. Entries are append-only (UPDATE/DELETE raise in the database).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NoReturn

import psycopg
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from models.assets import PrecisionError, UnknownCurrency, check_scale, scale

# --- errors -------------------------------------------------------------------------------------


class LedgerError(Exception):
    """Base of ledger errors. Each subclass says what the caller should do."""

    code = "ledger_error"


class InsufficientFunds(LedgerError):
    """The account's available balance cannot cover the debit or hold. Reject the request."""

    code = "insufficient_funds"


class HoldNotActive(LedgerError):
    """The hold was already committed or released. Do not retry; the earlier outcome stands."""

    code = "hold_not_active"


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request: a bug in the caller's keying. Investigate."""

    code = "idempotency_conflict"


class UnbalancedPosting(LedgerError):
    """The legs do not sum to zero per currency, or there are fewer than two. A caller bug."""

    code = "unbalanced_posting"


class UnknownAccount(LedgerError):
    """No such account or hold. Reject the request."""

    code = "unknown_account"


class CurrencyMismatch(LedgerError):
    """A leg's currency differs from its account's, or the currency is unknown. Reject the request."""

    code = "currency_mismatch"


class InvalidAmount(LedgerError):
    """Zero, negative where a positive is needed, or finer than the currency's scale. Reject it."""

    code = "invalid_amount"


_SQLSTATE_ERRORS: dict[str, type[LedgerError]] = {
    "LG001": InsufficientFunds,
    "LG002": HoldNotActive,
    "LG003": IdempotencyConflict,
    "LG004": UnbalancedPosting,
    "LG005": UnknownAccount,
    "LG006": CurrencyMismatch,
    "LG007": InvalidAmount,
    "LG008": InvalidAmount,
    "23514": InsufficientFunds,  # a balance CHECK constraint: the last line of defence
}


def _ledger_error(e: BaseException) -> LedgerError | None:
    """The ledger error a database error stands for (by SQLSTATE), or None if it stands for none."""
    driver_error = e.orig if isinstance(e, DBAPIError) else e
    cls = _SQLSTATE_ERRORS.get(getattr(driver_error, "sqlstate", None) or "")
    if cls is None:
        return None
    diag = getattr(driver_error, "diag", None)
    return cls(getattr(diag, "message_primary", None) or str(driver_error))


def _raise_translated(e: BaseException) -> NoReturn:
    """Raise the ledger error `e` stands for, caused by `e`; any other error is re-raised as it is.

    Never `raise e from e`: an exception that is its own cause makes every walker of the cause
    chain (Temporal's failure converter, for one) recurse until RecursionError, and the real
    message never reaches the workflow's history.
    """
    translated = _ledger_error(e)
    if translated is None:
        raise e
    raise translated from e


_POST_SQL = (
    "SELECT transaction_id, replayed FROM ledger_post(%(tx)s, %(key)s, %(hash)s, %(kind)s, %(rt)s, "
    "%(rid)s, %(by)s, %(meta)s::jsonb, %(legs)s::jsonb, %(close)s)"
)
_POST_BATCH_SQL = "SELECT idx, transaction_id, replayed FROM ledger_post_batch(%s::jsonb)"
_POST_SQL_TEXT = (
    "SELECT transaction_id, replayed FROM ledger_post(:tx, :key, :hash, :kind, :rt, :rid, :by, "
    "CAST(:meta AS jsonb), CAST(:legs AS jsonb), :close)"
)


# --- house accounts -----------------------------------------------------------------------------


class HouseAccount:
    """Codes of the house's accounts. One (code, currency) is a pool of shard rows."""

    FEE_REVENUE = "fee_revenue"
    BANK_CASH = "bank:cash"  # customer GBP held at the bank (safeguarding account)
    SUSPENSE = "suspense"  # money we received but cannot attribute yet
    WITHDRAWALS_IN_FLIGHT = "withdrawals:in_flight"
    ROUNDING = "rounding"  # dust the house absorbs so a venue fill always settles (services/orders.py)

    @staticmethod
    def provider(name: str) -> str:
        """Our omnibus/settlement account at a liquidity provider."""
        return f"provider:{name}"


@dataclass(frozen=True)
class House:
    """A leg's target when it is a house account; the ledger picks the shard."""

    code: str


AccountRef = uuid.UUID | House


@dataclass(frozen=True)
class Leg:
    account: AccountRef
    currency: str
    amount: Decimal
    hold_id: uuid.UUID | None = None  # the debit is paid from this hold (customer's reserved funds)


@dataclass(frozen=True)
class Posting:
    """A journal transaction to apply once. `step` distinguishes the postings of one reference."""

    reference_type: str
    reference_id: uuid.UUID
    step: str
    legs: Sequence[Leg]
    kind: str = "transfer"
    created_by: uuid.UUID | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    close_holds: bool = True  # commit the holds used (release what they did not consume)

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.reference_type, self.reference_id, self.step)


def idempotency_key(reference_type: str, reference_id: uuid.UUID, step: str) -> str:
    return f"{reference_type}:{reference_id}:{step}"


# --- results ------------------------------------------------------------------------------------


class PostingResult(BaseModel):
    transaction_id: uuid.UUID
    replayed: bool


class HoldResult(BaseModel):
    hold_id: uuid.UUID
    replayed: bool


class Balance(BaseModel):
    account_id: uuid.UUID | None
    currency: str
    balance: Decimal
    available: Decimal
    reserved: Decimal


class HoldView(BaseModel):
    id: uuid.UUID
    account_id: uuid.UUID
    currency: str
    amount: Decimal
    consumed: Decimal
    status: str
    reference_type: str
    reference_id: uuid.UUID


class Entry(BaseModel):
    id: uuid.UUID
    transaction_id: uuid.UUID
    account_id: uuid.UUID
    seq: int
    currency: str
    amount: Decimal
    balance_after: Decimal
    reference_type: str
    reference_id: uuid.UUID
    created_at: datetime


class EntryPage(BaseModel):
    entries: list[Entry]
    next_cursor: str | None


class CurrencyTotals(BaseModel):
    currency: str
    customer: Decimal
    house: Decimal
    total: Decimal  # customer + house: zero when the books balance
    customer_reserved: Decimal


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


# --- the ledger ---------------------------------------------------------------------------------


def _fmt(amount: Decimal) -> str:
    return format(amount, "f")


def _request_hash(posting: Posting) -> str:
    """Fingerprint of what the posting means (house legs by code, not shard), for key-reuse detection."""
    legs = sorted(
        (
            leg.account.code if isinstance(leg.account, House) else str(leg.account),
            leg.currency,
            _fmt(leg.amount.normalize()),
            str(leg.hold_id or ""),
        )
        for leg in posting.legs
    )
    body = json.dumps(
        [posting.kind, posting.reference_type, str(posting.reference_id), legs, posting.close_holds]
    )
    return hashlib.sha256(body.encode()).hexdigest()


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
        _fmt(amount.quantize(q)),
        _fmt(balance_after.quantize(q)),
        reference_type,
        str(reference_id),
        created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _known(currency: str) -> None:
    try:
        scale(currency)
    except UnknownCurrency as e:
        raise CurrencyMismatch(str(e)) from e


def _encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps([str(v) for v in values]).encode()).decode()


def _decode_cursor(cursor: str) -> list[str]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError) as e:
        raise InvalidCursor("malformed cursor") from e
    if not isinstance(values, list):
        raise InvalidCursor("malformed cursor")
    return [str(v) for v in values]


class InvalidCursor(LedgerError):
    """The pagination cursor is not one we issued. Start again without a cursor."""

    code = "invalid_cursor"


@dataclass(frozen=True)
class _PostRequest:
    """The arguments of one `ledger_post` call, ready to send alone or in a batch."""

    tx: uuid.UUID
    key: str
    hash: str
    kind: str
    rt: str
    rid: uuid.UUID
    by: uuid.UUID | None
    meta: dict[str, Any]
    legs: list[dict[str, Any]]
    close: bool

    def params(self) -> dict[str, Any]:
        return {
            "tx": self.tx,
            "key": self.key,
            "hash": self.hash,
            "kind": self.kind,
            "rt": self.rt,
            "rid": self.rid,
            "by": self.by,
            "meta": json.dumps(self.meta, default=str),
            "legs": json.dumps(self.legs),
            "close": self.close,
        }

    def wire(self) -> dict[str, Any]:
        return {
            "tx": str(self.tx),
            "key": self.key,
            "hash": self.hash,
            "kind": self.kind,
            "rt": self.rt,
            "rid": str(self.rid),
            "by": str(self.by) if self.by else None,
            "meta": self.meta,
            "legs": self.legs,
            "close": self.close,
        }


async def _send_alone(raw: psycopg.AsyncConnection[Any], request: _PostRequest) -> PostingResult:
    """One posting, one autocommit statement."""
    try:
        cursor = await raw.execute(_POST_SQL, request.params())
        row = await cursor.fetchone()
    except psycopg.Error as e:
        _raise_translated(e)
    assert row is not None
    return PostingResult(transaction_id=row[0], replayed=row[1])


async def _send_batch(
    raw: psycopg.AsyncConnection[Any], requests: Sequence[_PostRequest]
) -> list[PostingResult]:
    """Several postings in one statement and one commit; all or nothing."""
    body = json.dumps([r.wire() for r in requests], default=str)
    cursor = await raw.execute(_POST_BATCH_SQL, (body,))
    results: dict[int, PostingResult] = {
        idx: PostingResult(transaction_id=tx, replayed=replayed)
        for idx, tx, replayed in await cursor.fetchall()
    }
    if sorted(results) != list(range(len(requests))):
        raise RuntimeError("ledger_post_batch did not return one result per posting")
    return [results[i] for i in range(len(requests))]


_Waiting = tuple[_PostRequest, "asyncio.Future[PostingResult]"]


class _GroupCommit:
    """Group commit for standalone postings: the ones that arrive while earlier ones are being
    written go to the database together, as one `ledger_post_batch` call in one transaction.

    Why: on a small machine a posting costs less in the database than its round trip, its
    connection checkout and its own commit (one WAL flush each). Under load, batching amortises all
    three; alone, a posting is sent at once (a batch of one is a plain `ledger_post`), so nothing
    waits for a timer. At most `max_in_flight` flushers send at a time, each with a batch of at most
    `max_batch` postings, so a batch holds its rows' locks for a bounded time. A flusher keeps its
    connection for as long as postings keep coming, and returns it to the pool when none is queued.

    If a batch fails, nothing of it was written (one statement, autocommit); each of its postings is
    then sent alone, so each caller gets exactly the result or the typed error it would have got on
    its own. If the connection broke under them, they are sent once more on a fresh connection.
    Idempotency keys make that safe even when the batch's fate is unknown (a connection lost during
    the commit): a posting that did commit comes back as a replay of itself.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connect: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
        max_batch: int,
        max_in_flight: int,
    ) -> None:
        self.loop = loop
        self._connect = connect
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._queue: list[_Waiting] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._sending = 0  # flushers with a batch in the database
        self._resent: set[int] = set()  # postings already sent again after a broken connection

    async def submit(self, request: _PostRequest) -> PostingResult:
        future: asyncio.Future[PostingResult] = self.loop.create_future()
        self._queue.append((request, future))
        if len(self._flushers) < self._max_in_flight:
            self._flushers.add(self.loop.create_task(self._flush()))
        return await future

    async def _flush(self) -> None:
        live: list[_Waiting] = []
        try:
            while self._queue:
                connected = False
                try:
                    async with self._connect() as raw:
                        connected = True
                        while self._queue and not raw.broken:
                            live = self._take()
                            self._sending += 1
                            try:
                                if len(live) < 2 or await self._try_batch(raw, live) is not None:
                                    await self._one_by_one(raw, live)
                            finally:
                                self._sending -= 1
                            # Let the callers just answered queue their next postings before
                            # deciding the stream has ended and giving the connection back.
                            await asyncio.sleep(0)
                except Exception as e:  # noqa: BLE001 - no connection: the waiting callers get why
                    if connected:
                        continue  # a broken connection failed to close: take a fresh one
                    for _, future in [*live, *self._queue]:
                        if not future.done():
                            future.set_exception(e)
                    self._queue.clear()
        finally:
            # No await between the loop's last check and here, so a posting submitted from now on
            # sees this flusher gone and starts another: nothing is left queued without a flusher.
            self._flushers.discard(asyncio.current_task())
            # Work left over means this task was cancelled (the loop is shutting down); if no other
            # flusher will send it, its callers must not wait forever.
            stranded = [f for _, f in live] + ([f for _, f in self._queue] if not self._flushers else [])
            for future in stranded:
                if not future.done():
                    future.cancel()

    def _take(self) -> list[_Waiting]:
        """This flusher's share of the queue: split evenly with the flushers not sending right now,
        so several database sessions (cores) work in parallel instead of one taking everything."""
        idle = max(1, len(self._flushers) - self._sending)
        share = min(self._max_batch, -(-len(self._queue) // idle))
        batch = self._queue[:share]
        del self._queue[:share]
        return [(r, f) for r, f in batch if not f.done()]  # a cancelled caller gave up waiting

    async def _try_batch(self, raw: psycopg.AsyncConnection[Any], live: list[_Waiting]) -> object | None:
        """Send `live` as one batch; None when it landed, else the failure (nothing was written)."""
        try:
            results = await _send_batch(raw, [r for r, _ in live])
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - each posting is then sent alone to get its own outcome
            return e
        for (_, future), result in zip(live, results, strict=True):
            if not future.done():
                future.set_result(result)
        return None

    async def _one_by_one(self, raw: psycopg.AsyncConnection[Any], live: list[_Waiting]) -> None:
        for n, (request, future) in enumerate(live):
            if future.done():
                continue
            if raw.broken and self._resend_on_a_fresh_connection(live[n:]):
                return
            try:
                result = await _send_alone(raw, request)
            except Exception as e:  # noqa: BLE001 - handed to the caller that asked
                if raw.broken and self._resend_on_a_fresh_connection(live[n:]):
                    return
                if not future.done():
                    future.set_exception(e)
            else:
                if not future.done():
                    future.set_result(result)

    def _resend_on_a_fresh_connection(self, rest: list[_Waiting]) -> bool:
        """The connection broke under these postings: put them back at the head of the queue, once,
        for the next connection (a posting that did commit comes back as a replay of itself). False
        if they had their second chance already: then each caller gets its error."""
        waiting = [(r, f) for r, f in rest if not f.done()]
        if any(id(f) in self._resent for _, f in waiting):
            return False
        for _, future in waiting:
            self._resent.add(id(future))
            future.add_done_callback(lambda f: self._resent.discard(id(f)))
        self._queue[:0] = waiting
        return True


class Ledger:
    """Ledger operations over an async SQLAlchemy engine.

    Every write method accepts an optional `conn`: pass one to make the ledger change part of a
    larger transaction (an order settlement also writes trades and the order row), or leave it out
    to run in a transaction of its own.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        house_shards: int = 64,
        max_batch: int = 32,
        max_in_flight: int = 2,
    ) -> None:
        self._engine = engine
        self._shards = house_shards
        self._house_ids: dict[tuple[str, str], list[uuid.UUID]] = {}
        self._max_batch = max(1, max_batch)
        self._max_in_flight = max(1, max_in_flight)
        self._group: _GroupCommit | None = None

    @asynccontextmanager
    async def _tx(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        if conn is not None:
            yield conn
            return
        async with self._engine.begin() as own:
            yield own

    @asynccontextmanager
    async def _statement(self, conn: AsyncConnection | None) -> AsyncIterator[AsyncConnection]:
        """For a write that is one call to a ledger function: that statement is atomic by itself,
        so on its own it runs in autocommit (one round trip instead of BEGIN, call, COMMIT)."""
        if conn is not None:
            yield conn
            return
        async with self._engine.connect() as own:
            yield await own.execution_options(isolation_level="AUTOCOMMIT")

    # accounts -------------------------------------------------------------------------------

    async def customer_account(
        self, user_id: uuid.UUID, currency: str, conn: AsyncConnection | None = None
    ) -> uuid.UUID:
        """The customer's account in `currency`, created on first use.

        Looked up first, inserted only when missing: `INSERT … ON CONFLICT DO NOTHING` on an existing
        row waits for any transaction that is updating that row (its balance), which under load
        chains one customer's concurrent settlements into deadlocks.
        """
        _known(currency)
        lookup = text("SELECT id FROM accounts WHERE kind = 'customer' AND user_id = :u AND currency = :c")
        async with self._tx(conn) as c:
            row = (await c.execute(lookup, {"u": user_id, "c": currency})).first()
            if row is not None:
                return uuid.UUID(str(row[0]))
            row = (
                await c.execute(
                    text(
                        "INSERT INTO accounts (id, kind, user_id, currency) VALUES (:id, 'customer', :u, :c) "
                        "ON CONFLICT (user_id, currency) WHERE kind = 'customer' DO NOTHING RETURNING id"
                    ),
                    {"id": uuid.uuid4(), "u": user_id, "c": currency},
                )
            ).first()
            if row is None:
                row = (await c.execute(lookup, {"u": user_id, "c": currency})).first()
            if row is None:
                raise UnknownAccount(f"no account for user {user_id} in {currency}")
            return uuid.UUID(str(row[0]))

    async def house_shards(self, code: str, currency: str) -> list[uuid.UUID]:
        """The shard rows of a house account, created on first use and cached."""
        key = (code, currency)
        cached = self._house_ids.get(key)
        if cached is not None:
            return cached
        _known(currency)
        async with self._engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO accounts (id, kind, code, currency, shard) "
                    "SELECT gen_random_uuid(), 'house', :code, :cur, s FROM generate_series(0, :n - 1) s "
                    "ON CONFLICT (code, currency, shard) WHERE kind = 'house' DO NOTHING"
                ),
                {"code": code, "cur": currency, "n": self._shards},
            )
            rows = (
                await c.execute(
                    text(
                        "SELECT id FROM accounts WHERE kind = 'house' AND code = :code AND currency = :cur "
                        "ORDER BY shard"
                    ),
                    {"code": code, "cur": currency},
                )
            ).all()
        ids = [uuid.UUID(str(r[0])) for r in rows]
        self._house_ids[key] = ids
        return ids

    async def _leg_json(self, leg: Leg) -> dict[str, Any]:
        target: dict[str, Any]
        if isinstance(leg.account, House):
            shards = await self.house_shards(leg.account.code, leg.currency)
            target = {"house": leg.account.code, "shards": len(shards)}
        else:
            target = {"account_id": str(leg.account)}
        return {
            **target,
            "currency": leg.currency,
            "amount": _fmt(leg.amount),
            "hold_id": str(leg.hold_id) if leg.hold_id else None,
        }

    # writes ---------------------------------------------------------------------------------

    @staticmethod
    def _validate(posting: Posting) -> None:
        if len(posting.legs) < 2:
            raise UnbalancedPosting("a posting needs at least two legs")
        sums: dict[str, Decimal] = {}
        for leg in posting.legs:
            try:
                check_scale(leg.currency, leg.amount)
            except UnknownCurrency as e:
                raise CurrencyMismatch(str(e)) from e
            except PrecisionError as e:
                raise InvalidAmount(str(e)) from e
            if leg.amount == 0:
                raise InvalidAmount("leg amounts must be non-zero")
            if leg.hold_id is not None and leg.amount > 0:
                raise InvalidAmount("a leg paid from a hold must be a debit")
            sums[leg.currency] = sums.get(leg.currency, Decimal(0)) + leg.amount
        unbalanced = {c: s for c, s in sums.items() if s != 0}
        if unbalanced:
            raise UnbalancedPosting(f"legs do not sum to zero: {unbalanced}")

    async def post(self, posting: Posting, conn: AsyncConnection | None = None) -> PostingResult:
        """Apply the posting once. A repeat with the same key returns the first result.

        Without `conn`, concurrent postings share database transactions (group commit, see
        `_GroupCommit`); the result, the errors and the idempotency are those of a posting alone.
        """
        self._validate(posting)
        legs = [await self._leg_json(leg) for leg in posting.legs]
        request = _PostRequest(
            tx=uuid.uuid4(),
            key=posting.idempotency_key,
            hash=_request_hash(posting),
            kind=posting.kind,
            rt=posting.reference_type,
            rid=posting.reference_id,
            by=posting.created_by,
            meta=posting.metadata,
            legs=legs,
            close=posting.close_holds,
        )
        if conn is not None:
            try:
                row = (await conn.execute(text(_POST_SQL_TEXT), request.params())).one()
            except DBAPIError as e:
                _raise_translated(e)
            return PostingResult(transaction_id=row[0], replayed=row[1])
        loop = asyncio.get_running_loop()
        if self._group is None or self._group.loop is not loop:
            self._group = _GroupCommit(loop, self._raw_autocommit, self._max_batch, self._max_in_flight)
        return await self._group.submit(request)

    @asynccontextmanager
    async def _raw_autocommit(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection in autocommit, as the driver's own object: the hot path skips the
        SQL layer's per-statement work (a posting is one statement, atomic by itself)."""
        try:
            async with self._statement(None) as c:
                raw = (await c.get_raw_connection()).driver_connection
                assert raw is not None
                yield raw
        except DBAPIError as e:
            _raise_translated(e)

    async def reserve(
        self,
        account_id: uuid.UUID,
        currency: str,
        amount: Decimal,
        *,
        reference_type: str,
        reference_id: uuid.UUID,
        step: str = "reserve",
        conn: AsyncConnection | None = None,
    ) -> HoldResult:
        """Move `amount` from available to reserved, atomically checked. Idempotent by key."""
        try:
            check_scale(currency, amount)
        except UnknownCurrency as e:
            raise CurrencyMismatch(str(e)) from e
        except PrecisionError as e:
            raise InvalidAmount(str(e)) from e
        if amount <= 0:
            raise InvalidAmount("a hold must be positive")
        try:
            async with self._statement(conn) as c:
                row = (
                    await c.execute(
                        text(
                            "SELECT hold_id, replayed "
                            "FROM ledger_reserve(:id, :key, :acc, :cur, :amt, :rt, :rid)"
                        ),
                        {
                            "id": uuid.uuid4(),
                            "key": idempotency_key(reference_type, reference_id, step),
                            "acc": account_id,
                            "cur": currency,
                            "amt": amount,
                            "rt": reference_type,
                            "rid": reference_id,
                        },
                    )
                ).one()
        except DBAPIError as e:
            _raise_translated(e)
        return HoldResult(hold_id=row[0], replayed=row[1])

    async def release(self, hold_id: uuid.UUID, conn: AsyncConnection | None = None) -> bool:
        """Return an active hold to available. Releasing a released hold is a no-op (returns False);
        releasing a committed one raises HoldNotActive."""
        try:
            async with self._statement(conn) as c:
                row = (
                    await c.execute(text("SELECT status, replayed FROM ledger_release(:id)"), {"id": hold_id})
                ).one()
        except DBAPIError as e:
            _raise_translated(e)
        return not bool(row[1])

    async def commit(
        self,
        hold_id: uuid.UUID,
        posting: Posting,
        conn: AsyncConnection | None = None,
    ) -> PostingResult:
        """Consume a hold inside `posting` (its debit legs carry `hold_id`) and release the rest.

        A convenience over `post`: it checks the posting really draws on this hold.
        """
        if not any(leg.hold_id == hold_id for leg in posting.legs):
            raise UnbalancedPosting("the posting does not draw on the hold it commits")
        return await self.post(posting, conn)

    # reads ----------------------------------------------------------------------------------

    async def balances(self, user_id: uuid.UUID) -> list[Balance]:
        async with self._engine.connect() as c:
            rows = (
                await c.execute(
                    text(
                        "SELECT id, currency, balance, available_balance, reserved_balance FROM accounts "
                        "WHERE kind = 'customer' AND user_id = :u ORDER BY currency"
                    ),
                    {"u": user_id},
                )
            ).all()
        return [
            Balance(account_id=r[0], currency=r[1], balance=r[2], available=r[3], reserved=r[4]) for r in rows
        ]

    async def balance(self, account_id: uuid.UUID) -> Balance:
        async with self._engine.connect() as c:
            row = (
                await c.execute(
                    text(
                        "SELECT id, currency, balance, available_balance, reserved_balance FROM accounts "
                        "WHERE id = :id"
                    ),
                    {"id": account_id},
                )
            ).first()
        if row is None:
            raise UnknownAccount(f"unknown account {account_id}")
        return Balance(account_id=row[0], currency=row[1], balance=row[2], available=row[3], reserved=row[4])

    async def house_balance(self, code: str, currency: str) -> Balance:
        """Sum over the account's shards."""
        async with self._engine.connect() as c:
            row = (
                await c.execute(
                    text(
                        "SELECT coalesce(sum(balance), 0), coalesce(sum(available_balance), 0), "
                        "coalesce(sum(reserved_balance), 0) FROM accounts "
                        "WHERE kind = 'house' AND code = :code AND currency = :cur"
                    ),
                    {"code": code, "cur": currency},
                )
            ).one()
        return Balance(account_id=None, currency=currency, balance=row[0], available=row[1], reserved=row[2])

    async def entries(
        self, account_ids: Sequence[uuid.UUID], *, limit: int = 50, cursor: str | None = None
    ) -> EntryPage:
        """Entries of the given accounts, newest first, with an opaque cursor for the next page."""
        if not account_ids:
            return EntryPage(entries=[], next_cursor=None)
        limit = max(1, min(limit, 500))
        where = "account_id = ANY(:ids)"
        params: dict[str, Any] = {"ids": list(account_ids), "lim": limit + 1}
        if cursor:
            created, entry_id = _decode_cursor(cursor)[:2]
            try:
                params["c_at"] = datetime.fromisoformat(created)
                params["c_id"] = uuid.UUID(entry_id)
            except ValueError as e:
                raise InvalidCursor("malformed cursor") from e
            where += " AND (created_at, id) < (:c_at, :c_id)"
        async with self._engine.connect() as c:
            rows = (
                await c.execute(
                    text(
                        "SELECT id, transaction_id, account_id, seq, currency, amount, balance_after, "
                        f"reference_type, reference_id, created_at FROM ledger_entries WHERE {where} "
                        "ORDER BY created_at DESC, id DESC LIMIT :lim"
                    ),
                    params,
                )
            ).all()
        page = [
            Entry(
                id=r[0],
                transaction_id=r[1],
                account_id=r[2],
                seq=r[3],
                currency=r[4],
                amount=r[5],
                balance_after=r[6],
                reference_type=r[7],
                reference_id=r[8],
                created_at=r[9],
            )
            for r in rows[:limit]
        ]
        next_cursor = (
            _encode_cursor([page[-1].created_at.isoformat(), page[-1].id]) if len(rows) > limit else None
        )
        return EntryPage(entries=page, next_cursor=next_cursor)

    async def totals(self) -> list[CurrencyTotals]:
        """Per currency: customer and house sums. `total` is zero when the books balance."""
        async with self._engine.connect() as c:
            rows = (
                await c.execute(
                    text(
                        "SELECT cur.code, "
                        "coalesce(sum(a.balance) FILTER (WHERE a.kind = 'customer'), 0), "
                        "coalesce(sum(a.balance) FILTER (WHERE a.kind = 'house'), 0), "
                        "coalesce(sum(a.reserved_balance) FILTER (WHERE a.kind = 'customer'), 0) "
                        "FROM currencies cur LEFT JOIN accounts a ON a.currency = cur.code "
                        "GROUP BY cur.code ORDER BY cur.code"
                    )
                )
            ).all()
        return [
            CurrencyTotals(
                currency=r[0], customer=r[1], house=r[2], total=r[1] + r[2], customer_reserved=r[3]
            )
            for r in rows
        ]

    async def holds_for(self, reference_type: str, reference_id: uuid.UUID) -> list[HoldView]:
        async with self._engine.connect() as c:
            rows = (
                await c.execute(
                    text(
                        "SELECT id, account_id, currency, amount, consumed, status, "
                        "reference_type, reference_id "
                        "FROM holds WHERE reference_type = :rt AND reference_id = :rid ORDER BY created_at"
                    ),
                    {"rt": reference_type, "rid": reference_id},
                )
            ).all()
        return [
            HoldView(
                id=r[0],
                account_id=r[1],
                currency=r[2],
                amount=r[3],
                consumed=r[4],
                status=r[5],
                reference_type=r[6],
                reference_id=r[7],
            )
            for r in rows
        ]

    async def verify(self) -> VerifyReport:
        """Recompute every account's hash chain and balances; report the first inconsistency.

        Checks per account: `seq` runs 1..n without gaps; each entry's `prev_hash` is its
        predecessor's hash and its `hash` matches its fields; `balance_after` is the running sum;
        the account row's balance, `entry_seq` and `last_hash` match the last entry; reserved equals
        the unconsumed part of its active holds. Globally: every journal transaction sums to zero.
        """
        accounts_checked = 0
        entries_checked = 0
        async with self._engine.connect() as conn:
            # One snapshot for every read below: postings committed while the check runs would otherwise
            # show an account row from before them beside entries from after (a false "chain has more").
            c = await conn.execution_options(isolation_level="REPEATABLE READ")
            await c.execute(text("SET TRANSACTION READ ONLY"))
            accounts = (
                await c.execute(
                    text(
                        "SELECT a.id, a.balance, a.entry_seq, a.last_hash, a.reserved_balance, "
                        "coalesce((SELECT sum(h.amount - h.consumed) FROM holds h "
                        "          WHERE h.account_id = a.id AND h.status = 'active'), 0) "
                        "FROM accounts a ORDER BY a.id"
                    )
                )
            ).all()
            for acc_id, balance, entry_seq, last_hash, reserved, held in accounts:
                accounts_checked += 1
                result = await c.stream(
                    text(
                        "SELECT id, transaction_id, seq, currency, amount, balance_after, reference_type, "
                        "reference_id, created_at, prev_hash, hash FROM ledger_entries "
                        "WHERE account_id = :a ORDER BY seq"
                    ),
                    {"a": acc_id},
                )
                prev: str | None = None
                running = Decimal(0)
                expected_seq = 1
                async for e in result:
                    entries_checked += 1
                    if e.seq != expected_seq:
                        return self._bad(
                            accounts_checked,
                            entries_checked,
                            acc_id,
                            expected_seq,
                            None,
                            f"entry seq {expected_seq} is missing (found {e.seq})",
                        )
                    if e.prev_hash != prev:
                        return self._bad(
                            accounts_checked,
                            entries_checked,
                            acc_id,
                            e.seq,
                            e.id,
                            "prev_hash does not match the previous entry",
                        )
                    running += e.amount
                    if e.balance_after != running:
                        return self._bad(
                            accounts_checked,
                            entries_checked,
                            acc_id,
                            e.seq,
                            e.id,
                            f"balance_after {e.balance_after} but entries sum to {running}",
                        )
                    h = entry_hash(
                        prev,
                        e.id,
                        e.transaction_id,
                        acc_id,
                        e.seq,
                        e.currency,
                        e.amount,
                        e.balance_after,
                        e.reference_type,
                        e.reference_id,
                        e.created_at,
                    )
                    if h != e.hash:
                        return self._bad(
                            accounts_checked,
                            entries_checked,
                            acc_id,
                            e.seq,
                            e.id,
                            "hash does not match the entry's contents",
                        )
                    prev = e.hash
                    expected_seq += 1
                if expected_seq - 1 != entry_seq or prev != last_hash:
                    return self._bad(
                        accounts_checked,
                        entries_checked,
                        acc_id,
                        expected_seq,
                        None,
                        f"account says {entry_seq} entries ending {last_hash}, chain has "
                        f"{expected_seq - 1} ending {prev}",
                    )
                if running != balance:
                    return self._bad(
                        accounts_checked,
                        entries_checked,
                        acc_id,
                        None,
                        None,
                        f"account balance {balance} but entries sum to {running}",
                    )
                if reserved != held:
                    return self._bad(
                        accounts_checked,
                        entries_checked,
                        acc_id,
                        None,
                        None,
                        f"reserved {reserved} but active holds leave {held}",
                    )
            unbalanced = (
                await c.execute(
                    text(
                        "SELECT transaction_id FROM ledger_entries GROUP BY transaction_id, currency "
                        "HAVING sum(amount) <> 0 LIMIT 1"
                    )
                )
            ).first()
        if unbalanced is not None:
            return VerifyReport(
                ok=False,
                accounts_checked=accounts_checked,
                entries_checked=entries_checked,
                first_problem=VerifyProblem(
                    account_id=uuid.UUID(int=0),
                    seq=None,
                    entry_id=None,
                    reason=f"journal transaction {unbalanced[0]} does not balance",
                ),
            )
        return VerifyReport(ok=True, accounts_checked=accounts_checked, entries_checked=entries_checked)

    @staticmethod
    def _bad(
        accounts: int,
        entries: int,
        account_id: uuid.UUID,
        seq: int | None,
        entry_id: uuid.UUID | None,
        reason: str,
    ) -> VerifyReport:
        return VerifyReport(
            ok=False,
            accounts_checked=accounts,
            entries_checked=entries,
            first_problem=VerifyProblem(account_id=account_id, seq=seq, entry_id=entry_id, reason=reason),
        )


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
]

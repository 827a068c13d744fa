"""The `Ledger`: one per process, over the process's engine. Its methods write (accounts, postings,
holds); its reads and `verify` hand over to `reads.py` and `verify.py`.

It keeps what must live as long as the process: the house accounts' shard ids (looked up once) and
the group commit of standalone postings (one per event loop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ledger import reads
from services.ledger import verify as verification
from services.ledger.errors import UnbalancedPosting, UnknownAccount, raise_translated
from services.ledger.group_commit import GroupCommit, PostRequest
from services.ledger.posting import (
    HoldResult,
    House,
    Leg,
    Posting,
    PostingResult,
    check_currency,
    fmt,
    idempotency_key,
    request_hash,
    validate_hold,
    validate_posting,
)

_POST_SQL_TEXT = (
    "SELECT transaction_id, replayed FROM ledger_post(:tx, :key, :hash, :kind, :rt, :rid, :by, "
    "CAST(:meta AS jsonb), CAST(:legs AS jsonb), :close)"
)


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
        self._group: GroupCommit | None = None

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
        check_currency(currency)
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
        check_currency(currency)
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
            "amount": fmt(leg.amount),
            "hold_id": str(leg.hold_id) if leg.hold_id else None,
        }

    # writes ---------------------------------------------------------------------------------

    async def post(self, posting: Posting, conn: AsyncConnection | None = None) -> PostingResult:
        """Apply the posting once. A repeat with the same key returns the first result.

        Without `conn`, concurrent postings share database transactions (group commit, see
        `GroupCommit`); the result, the errors and the idempotency are those of a posting alone.
        """
        validate_posting(posting)
        legs = [await self._leg_json(leg) for leg in posting.legs]
        request = PostRequest(
            tx=uuid.uuid4(),
            key=posting.idempotency_key,
            hash=request_hash(posting),
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
                raise_translated(e)
            return PostingResult(transaction_id=row[0], replayed=row[1])
        loop = asyncio.get_running_loop()
        if self._group is None or self._group.loop is not loop:
            self._group = GroupCommit(loop, self._raw_autocommit, self._max_batch, self._max_in_flight)
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
            raise_translated(e)

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
        validate_hold(currency, amount)
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
            raise_translated(e)
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
            raise_translated(e)
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

    # reads (services/ledger/reads.py) and verification (services/ledger/verify.py) -------------

    async def balances(
        self, user_id: uuid.UUID, *, conn: AsyncConnection | None = None
    ) -> list[reads.Balance]:
        return await reads.balances(self._engine, user_id, conn=conn)

    async def balance(self, account_id: uuid.UUID) -> reads.Balance:
        return await reads.balance(self._engine, account_id)

    async def house_balance(self, code: str, currency: str) -> reads.Balance:
        """Sum over the account's shards."""
        return await reads.house_balance(self._engine, code, currency)

    async def entries(
        self, account_ids: Sequence[uuid.UUID], *, limit: int = 50, cursor: str | None = None
    ) -> reads.EntryPage:
        """Entries of the given accounts, newest first, with an opaque cursor for the next page."""
        return await reads.entries(self._engine, account_ids, limit=limit, cursor=cursor)

    async def totals(self) -> list[reads.CurrencyTotals]:
        """Per currency: customer and house sums. `total` is zero when the books balance."""
        return await reads.totals(self._engine)

    async def holds_for(self, reference_type: str, reference_id: uuid.UUID) -> list[reads.HoldView]:
        return await reads.holds_for(self._engine, reference_type, reference_id)

    async def verify(self) -> verification.VerifyReport:
        """Recompute every account's hash chain and balances; report the first inconsistency."""
        return await verification.verify(self._engine)

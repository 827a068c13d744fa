"""Group commit: standalone postings that arrive together reach the database as one batch.

A posting is sent as a `PostRequest` (the arguments of one `ledger_post` call). Alone it is one
autocommit statement (`send_alone`); several go as one `ledger_post_batch` statement (`send_batch`).
`GroupCommit` decides which, per event loop; the `Ledger` owns one and hands it its postings.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import psycopg

from services.ledger.errors import raise_translated
from services.ledger.posting import PostingResult

POST_SQL = (
    "SELECT transaction_id, replayed FROM ledger_post(%(tx)s, %(key)s, %(hash)s, %(kind)s, %(rt)s, "
    "%(rid)s, %(by)s, %(meta)s::jsonb, %(legs)s::jsonb, %(close)s)"
)
POST_BATCH_SQL = "SELECT idx, transaction_id, replayed FROM ledger_post_batch(%s::jsonb)"


@dataclass(frozen=True)
class PostRequest:
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


async def send_alone(raw: psycopg.AsyncConnection[Any], request: PostRequest) -> PostingResult:
    """One posting, one autocommit statement."""
    try:
        cursor = await raw.execute(POST_SQL, request.params())
        row = await cursor.fetchone()
    except psycopg.Error as e:
        raise_translated(e)
    assert row is not None
    return PostingResult(transaction_id=row[0], replayed=row[1])


async def send_batch(
    raw: psycopg.AsyncConnection[Any], requests: Sequence[PostRequest]
) -> list[PostingResult]:
    """Several postings in one statement and one commit; all or nothing."""
    body = json.dumps([r.wire() for r in requests], default=str)
    cursor = await raw.execute(POST_BATCH_SQL, (body,))
    results: dict[int, PostingResult] = {
        idx: PostingResult(transaction_id=tx, replayed=replayed)
        for idx, tx, replayed in await cursor.fetchall()
    }
    if sorted(results) != list(range(len(requests))):
        raise RuntimeError("ledger_post_batch did not return one result per posting")
    return [results[i] for i in range(len(requests))]


_Waiting = tuple[PostRequest, "asyncio.Future[PostingResult]"]


class GroupCommit:
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

    async def submit(self, request: PostRequest) -> PostingResult:
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
            results = await send_batch(raw, [r for r, _ in live])
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
                result = await send_alone(raw, request)
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

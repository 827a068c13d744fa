"""The API process's one listener for database changes, fanned out to its WebSocket connections.

Why LISTEN/NOTIFY rather than polling: the feed used to poll PostgreSQL every 250 ms per connection, so
1,000 idle sockets cost 4,000 query batches a second. Now the writers' own transactions announce each change
(triggers on orders, customer accounts, trades, in-app feed rows, session revocations and user status;
migration 0032), PostgreSQL delivers the announcement at commit - never for a rolled-back change - and ONE
dedicated connection per process listens. A batch of announcements is filtered to the customers connected
here and loaded once per kind (`services.live_updates_loads`); each change costs the same whether its
customer has one socket open or five, and an idle process costs the database nothing.

What is given up, and how it is made good:
- A notification is not stored: if the listener's connection drops, what was announced meanwhile is lost.
  On reconnecting (after LISTEN, so nothing falls in between) the listener loads, for every customer
  connected here, their balances and the orders, trades and feed rows changed in the time it was deaf plus
  `catch_up_overlap`, and re-checks every connection's session in one query. Connections drop what they
  already saw (per-connection state below), so the look-back may be generous.
- The connection's half-open death is noticed through TCP keepalives (`KEEPALIVES`), not a ping query.
- Revocation used to be noticed by each connection re-checking its session every 30 s; now the revoking
  transaction announces it (kind `s`) and the feed closes at once. Token expiry needs no database at all.
- PostgreSQL serialises the commits of transactions that NOTIFY (a cluster-wide lock held from pre-commit to
  the end of commit, so no group commit among them): measured by `make bench BENCH=ws`, one-row account
  updates at 8 clients ran several times slower with it. So the triggers announce only customers that
  someone listens for: each process lists its connected customers in `live_listeners` (models/
  live_updates.py) under its listener's backend pid - on a customer's first socket, and all of them again
  whenever the listener (re)connects - and removes them when their last socket closes. House accounts never
  notify. A new socket's balance snapshot is read `FOR SHARE`, so a write that began before the customer
  was listed (and so will not announce) is waited for and shown.

A connection's queue is bounded: a client that does not read is ended (`overflow`) rather than letting the
process's memory grow; it reconnects and gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from services.live_updates_loads import (
    CHANNEL,
    Change,
    ChangeKind,
    Update,
    forget_dead_listeners,
    live_sessions,
    load_balances,
    load_since,
    load_updates,
    parse,
    register_listeners,
    unregister_listener,
    user_allowed,
)
from services.market_data import BestPrice, PriceTicker

log = logging.getLogger("services.live_updates")

KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
MAX_BATCH = 5000
PRICE_SLICE = 25  # sockets handed a tick at a time
PRICE_SPREAD_S = 0.5  # the slices of one tick are spread over this long (ticks come every second)
SEEN_PER_CONNECTION = 2000  # orders/trades/feed rows remembered for de-duplication


class ConnectionLimitReached(Exception):
    """The customer already has the maximum number of live connections to this process. Close one."""


class Subscription:
    """One WebSocket's outbox and what it has already been sent.

    Two lanes, drained by the socket's one sender (`next_frame`): the customer's own changes, in order and
    never dropped (a client too slow for them is ended, `overflow`), go before price ticks, of which only
    the latest per symbol is kept - a tick is stale once the next one exists.

    `ended` resolves with why the feed must stop: `session_ended` (revoked, or the user may no longer log
    in), `overflow` (the client stopped reading) or `shutdown`.
    """

    def __init__(self, user_id: uuid.UUID, session_id: uuid.UUID, queue_size: int) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.queue_size = queue_size
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._changes: deque[str] = deque()  # encoded frames
        self._prices: dict[str, str] = {}  # symbol -> its latest encoded tick
        self._ready = asyncio.Event()
        self._balances: dict[str, Any] = {}
        self._seen: OrderedDict[tuple[ChangeKind, Any], Any] = OrderedDict()

    async def next_frame(self) -> str:
        """The next frame to send: a change if any is waiting, else the oldest symbol's latest tick."""
        while True:
            if self._changes:
                return self._changes.popleft()
            if self._prices:
                symbol = next(iter(self._prices))
                return self._prices.pop(symbol)
            self._ready.clear()
            await self._ready.wait()

    def offer_price(self, symbol: str, frame: str) -> None:
        self._prices.pop(symbol, None)  # re-inserted last: symbols take turns
        self._prices[symbol] = frame
        self._ready.set()

    def offer(self, update: Update) -> None:
        """Queue `update`'s message unless this connection already has that state."""
        if self.ended.done():
            return
        if update.kind is ChangeKind.ACCOUNT:
            if self._balances.get(update.key) == update.state:
                return
            self._balances[update.key] = update.state
        else:
            key = (update.kind, update.key)
            if key in self._seen and self._seen[key] == update.state:
                return
            self._seen[key] = update.state
            self._seen.move_to_end(key)
            while len(self._seen) > SEEN_PER_CONNECTION:
                self._seen.popitem(last=False)
        if len(self._changes) >= self.queue_size:
            self.end("overflow")
            return
        self._changes.append(update.text)
        self._ready.set()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)


def libpq_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (`postgresql+psycopg://…`) as a libpq connection string for psycopg."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class LiveUpdates:
    """One per API process: `subscribe` per WebSocket, one listener connection for all of them.

    Args:
        engine: the process's engine; loads take a pooled connection for one query per kind per batch.
        database_url: where to LISTEN (a dedicated connection, outside the pool).
        max_connections_per_customer: more sockets than this for one customer are refused.
        allowed_statuses: user statuses that may keep a feed (the login statuses).
        queue_size: messages a connection may have waiting before it is ended as not reading.
        catch_up_overlap: how far before the listener went deaf the catch-up looks.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        database_url: str,
        *,
        max_connections_per_customer: int,
        allowed_statuses: Iterable[str],
        queue_size: int = 1000,
        catch_up_overlap: timedelta = timedelta(seconds=60),
        reconnect_max_s: float = 5.0,
        listen_timeout_s: float = 10.0,
    ) -> None:
        self.engine = engine
        self.dsn = libpq_dsn(database_url)
        self.max_connections_per_customer = max_connections_per_customer
        self.allowed_statuses = frozenset(allowed_statuses)
        self.queue_size = queue_size
        self.catch_up_overlap = catch_up_overlap
        self.reconnect_max_s = reconnect_max_s
        self.listen_timeout_s = listen_timeout_s
        self._by_user: dict[uuid.UUID, set[Subscription]] = {}
        self._pending: asyncio.Queue[str | timedelta] = asyncio.Queue()  # payloads, and catch-ups
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()
        self.listener_pid: int | None = None  # the listening backend (tests terminate it)
        self.reconnects = 0
        self._ticker: PriceTicker | None = None
        self._encode: Callable[[BestPrice], str] = repr
        self._prices_task: asyncio.Task[None] | None = None
        self._registry = asyncio.Lock()  # orders a customer's (un)registration in `live_listeners`
        self._background: set[asyncio.Task[None]] = set()

    # -- connections ---------------------------------------------------------------------------------

    async def subscribe(self, user_id: uuid.UUID, session_id: uuid.UUID) -> Subscription:
        """Register a connection and queue its snapshot (current balances).

        Registered before the snapshot is read, so a change committed in between is either in the snapshot
        or announced to it (and de-duplicated if both). Raises `ConnectionLimitReached`, and `TimeoutError`
        when the listener cannot reach the database (the feed could not be kept current).
        """
        subs = self._by_user.setdefault(user_id, set())
        if len(subs) >= self.max_connections_per_customer:
            raise ConnectionLimitReached(user_id)
        sub = Subscription(user_id, session_id, self.queue_size)
        subs.add(sub)
        self.start()
        self._start_prices()
        try:
            await asyncio.wait_for(self.listening.wait(), self.listen_timeout_s)
            async with self._registry:  # every socket, not only the first: a second one opened meanwhile
                assert self.listener_pid is not None  # must not read its snapshot before the listing
                await register_listeners(self.engine, [user_id], self.listener_pid)
            for update in await load_balances(self.engine, user_id):
                sub.offer(update)
        except BaseException:
            self.unsubscribe(sub)
            raise
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_user.get(sub.user_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_user[sub.user_id]
                self._in_background(self._unregister(sub.user_id))
        if not self._by_user:
            self._stop_prices()

    async def _unregister(self, user_id: uuid.UUID) -> None:
        """Stop the announcements for a customer whose last socket here closed (unless one opened since)."""
        async with self._registry:
            pid = self.listener_pid
            if user_id in self._by_user or pid is None:
                return
            try:
                await unregister_listener(self.engine, user_id, pid)
            except Exception as exc:  # a row left behind costs NOTIFYs, never a lost message
                log.warning("live updates: could not unregister a listener (%s)", type(exc).__name__)

    def _in_background(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def connections(self, user_id: uuid.UUID | None = None) -> int:
        if user_id is not None:
            return len(self._by_user.get(user_id, ()))
        return sum(len(s) for s in self._by_user.values())

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Start listening (on the first subscriber; a process with no sockets holds no connection)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._listen(), name="live-updates-listen"),
                asyncio.create_task(self._process(), name="live-updates-process"),
            ]

    async def close(self) -> None:
        self._stop_prices()
        tasks = [*self._tasks, *self._background]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = []
        for subs in list(self._by_user.values()):
            for sub in list(subs):
                sub.end("shutdown")
        if self.listener_pid is not None:
            try:  # this process's registrations end with it (a crash leaves them to forget_dead_listeners)
                await unregister_listener(self.engine, None, self.listener_pid)
            except Exception as exc:
                log.warning("live updates: could not clear listeners at shutdown (%s)", type(exc).__name__)

    # -- the listener --------------------------------------------------------------------------------

    async def _listen(self) -> None:
        backoff = 0.05
        deaf_since: float | None = None
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, **KEEPALIVES)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async with self._registry:  # announced from here on, for everyone connected here
                        self.listener_pid = conn.info.backend_pid
                        await forget_dead_listeners(self.engine)
                        await register_listeners(self.engine, list(self._by_user), self.listener_pid)
                    if deaf_since is not None:  # LISTEN is on: whatever commits from now on is announced
                        self.reconnects += 1
                        self._catch_up(timedelta(seconds=time.monotonic() - deaf_since))
                        deaf_since = None
                    self.listening.set()
                    backoff = 0.05
                    async for notify in conn.notifies():
                        self._pending.put_nowait(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the connection (or the server) went away: reconnect, then catch up
                log.warning("live updates: listener connection lost (%s); reconnecting", type(exc).__name__)
            self.listening.clear()
            if deaf_since is None:
                deaf_since = time.monotonic()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max_s)

    def _catch_up(self, deaf_for: timedelta) -> None:
        """Queue a catch-up behind the announcements already received: the loader runs one thing at a time,
        and each load reads the rows as they are then, so a socket never gets an older state after a newer
        one."""
        self._pending.put_nowait(deaf_for + self.catch_up_overlap)

    async def _run_catch_up(self, lookback: timedelta) -> None:
        for attempt in range(10):
            try:
                users = list(self._by_user)
                sessions = {s.session_id for subs in self._by_user.values() for s in subs}
                self._fan_out(await load_since(self.engine, users, lookback))
                live = await live_sessions(self.engine, sessions, self.allowed_statuses)
                for subs in list(self._by_user.values()):
                    for sub in list(subs):
                        if sub.session_id in sessions and sub.session_id not in live:
                            sub.end("session_ended")
                return
            except Exception as exc:
                log.warning("live updates: catch-up failed (%s), retrying", type(exc).__name__)
                await asyncio.sleep(min(0.1 * 2**attempt, self.reconnect_max_s))
        for subs in list(self._by_user.values()):  # could not catch up: let the clients start afresh
            for sub in list(subs):
                sub.end("overflow")

    # -- the loader ----------------------------------------------------------------------------------

    async def _process(self) -> None:
        while True:
            batch = [await self._pending.get()]
            while not self._pending.empty() and len(batch) < MAX_BATCH:
                batch.append(self._pending.get_nowait())
            lookbacks = [item for item in batch if isinstance(item, timedelta)]
            if lookbacks:
                await self._run_catch_up(max(lookbacks))
            payloads = [item for item in batch if isinstance(item, str)]
            changes = [c for c in map(parse, payloads) if c is not None and c.user_id in self._by_user]
            if not changes:
                continue
            for attempt in range(10):
                try:
                    await self._apply(changes)
                    break
                except Exception as exc:  # the database is briefly unavailable: the changes are still due
                    log.warning("live updates: load failed (%s), retrying", type(exc).__name__)
                    await asyncio.sleep(min(0.1 * 2**attempt, self.reconnect_max_s))
            else:
                self._catch_up(timedelta(0))

    async def _apply(self, changes: list[Change]) -> None:
        for change in changes:
            if change.kind is ChangeKind.SESSION_REVOKED:
                for sub in list(self._by_user.get(change.user_id, ())):
                    if sub.session_id == change.row_id:
                        sub.end("session_ended")
        status_changed = {c.user_id for c in changes if c.kind is ChangeKind.USER_STATUS}
        if status_changed:
            allowed = await user_allowed(self.engine, status_changed, self.allowed_statuses)
            for user_id in status_changed - allowed:
                for sub in list(self._by_user.get(user_id, ())):
                    sub.end("session_ended")
        self._fan_out(await load_updates(self.engine, changes))

    def _fan_out(self, updates: Iterable[Update]) -> None:
        for update in updates:
            for sub in list(self._by_user.get(update.user_id, ())):
                sub.offer(update)

    # -- prices --------------------------------------------------------------------------------------

    def share_prices(self, ticker: PriceTicker, encode: Callable[[BestPrice], str]) -> None:
        """Fan the process's price ticks out to every socket: each tick encoded once, handed out in slices
        spread over `PRICE_SPREAD_S`, so the senders a customer's change may queue behind are one slice's,
        never all of them (measured: with 1,000 sockets the ticks' burst set the p99 of balance messages).
        Runs while there are sockets (the ticker, and its venue reads, stop with the last one)."""
        self._ticker, self._encode = ticker, encode
        self._start_prices()

    def _start_prices(self) -> None:
        if self._ticker is not None and (self._prices_task is None or self._prices_task.done()):
            self._prices_task = asyncio.create_task(self._fan_out_prices(self._ticker), name="live-prices")

    def _stop_prices(self) -> None:
        if self._prices_task is not None:
            self._prices_task.cancel()
            self._prices_task = None

    async def _fan_out_prices(self, ticker: PriceTicker) -> None:
        ticks = ticker.subscribe()
        try:
            while True:
                batch = [await ticks.get()]
                while not ticks.empty():
                    batch.append(ticks.get_nowait())
                frames = [(p.symbol, self._encode(p)) for p in batch]
                subs = [s for group in self._by_user.values() for s in group]
                slices = range(0, len(subs), PRICE_SLICE)
                pause = PRICE_SPREAD_S / len(slices) if len(slices) > 1 else 0.0
                for start in slices:
                    for sub in subs[start : start + PRICE_SLICE]:
                        for symbol, frame in frames:
                            sub.offer_price(symbol, frame)
                    await asyncio.sleep(pause)
        finally:
            ticker.unsubscribe(ticks)

"""`make bench BENCH=ws`: the WebSocket feed with 1,000 clients of 1,000 customers, beside one client.

The API runs under uvicorn (one process, as `make run` starts it) in a subprocess against a throw-away
PostgreSQL; the clients live in `LOAD_PROCESSES` other processes, each holding its share of the sockets and
noting the wall-clock time at which each balance message arrives. The driver (this process) posts GBP
deposits through the real `Ledger`, one customer each, paced at `POSTINGS_PER_S`, and notes when each
commit returned. Measured:

- latency from a posting's commit to its balance message on the customer's socket (p50/p99), with one
  client connected (the reference) and with 1,000 (the headline ratio: p99 with 1,000 / p99 with one);
- the database's transactions per second while the 1,000 sockets sit idle (pg_stat_database's commit and
  rollback counters over `IDLE_SECONDS`, minus this script's own reads): the old feed polled every 250 ms
  per socket, about 4,000 a second for 1,000 sockets; LISTEN/NOTIFY should make it zero. Autovacuum's
  own transactions count there too, so the scans of the feed's tables (pg_stat_user_tables) are given beside
  it: any query of the feed would scan one;
- what NOTIFY costs the writers: PostgreSQL serialises the commits of notifying transactions, so pgbench
  updates random customer accounts (one row per transaction, `NOTIFY_CONCURRENCY` clients) without the
  trigger, with it while no customer has a socket open, and with every customer listened for.

Every socket also receives the shared price ticks (three symbols a second; without venues in this run the
prices are empty, but the messages are sent all the same), as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from bench.common import print_table, summary, throwaway_postgres, write_result
from devstack.ports import free_port

CUSTOMERS = 1000
LOAD_PROCESSES = 4
POSTINGS = 300
POSTINGS_PER_S = 50.0
IDLE_SETTLE_SECONDS = 11.0  # idle backends flush their statistics within 10 s
IDLE_SECONDS = 10.0
ROOT = Path(__file__).resolve().parent.parent
# What the old polling feed read per socket, and the new one per change: scanned while idle = polling.
FEED_TABLES = ("accounts", "orders", "trades", "user_notifications", "auth_sessions", "users")
WS_ARGS = os.environ.get("BENCH_WS_ARGS", "--ws-per-message-deflate false").split()


def bench_app() -> Any:
    """uvicorn factory for the run: `bench.api`'s app; with `BENCH_WS_PRICES=off` the price ticker ticks
    once an hour instead of every second (to see what the tick fan-out costs the balance messages)."""
    from bench.api import bench_app as api_app

    app = api_app()
    if os.environ.get("BENCH_WS_PRICES") == "off":
        from services.market_data import PriceTicker

        original = PriceTicker.__init__

        def hourly(self: PriceTicker, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            self.interval_s = 3600.0

        PriceTicker.__init__ = hourly  # type: ignore[method-assign]
    return app


# --- the clients (each load process) --------------------------------------------------------------


async def _clients(url: str, tokens: list[str]) -> None:
    import websockets

    received: list[tuple[str, str, float]] = []  # (user id, GBP balance, arrival time)
    sockets: list[Any] = []
    gate = asyncio.Semaphore(50)

    async def open_one(token: str) -> None:
        async with gate:
            ws = await websockets.connect(url, max_queue=None, open_timeout=60)
            await ws.send(json.dumps({"type": "auth", "token": token}))
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 60))
            assert welcome["type"] == "welcome", welcome
            sockets.append((ws, welcome["user_id"]))

    await asyncio.gather(*(open_one(t) for t in tokens))

    async def read(ws: Any, user_id: str) -> None:
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message["type"] == "balance" and message["currency"] == "GBP":
                received.append((user_id, message["balance"], now))

    readers = [asyncio.create_task(read(ws, uid)) for ws, uid in sockets]
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # until the driver says stop
    closed = sum(1 for r in readers if r.done())
    for r in readers:
        r.cancel()
    print(json.dumps({"received": received, "closed_early": closed}), flush=True)
    os._exit(0)  # the sockets' closing handshakes would only slow the run down


def _clients_main(argv: list[str]) -> None:
    url, tokens_file = argv
    asyncio.run(_clients(url, json.loads(Path(tokens_file).read_text())))


class ClientGroup:
    """The load processes for one phase: start, wait until every socket is authenticated, stop, collect."""

    def __init__(self, url: str, tokens: list[str], processes: int, workdir: Path) -> None:
        self.procs = []
        for i in range(processes):
            share = tokens[i::processes]
            if not share:
                continue
            path = workdir / f"tokens-{uuid.uuid4().hex}.json"
            path.write_text(json.dumps(share))
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.ws", "--clients", url, str(path)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )

    def wait_ready(self) -> None:
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"a client process failed to start: {line!r}")

    def stop(self) -> tuple[list[tuple[str, str, float]], int]:
        received: list[tuple[str, str, float]] = []
        closed = 0
        for p in self.procs:
            out, _ = p.communicate("stop\n", timeout=120)
            body = json.loads(out.strip().splitlines()[-1])
            received.extend(tuple(r) for r in body["received"])
            closed += body["closed_early"]
        return received, closed


# --- the database side ----------------------------------------------------------------------------


async def _setup(database_url: str) -> tuple[list[uuid.UUID], list[str]]:
    """`CUSTOMERS` verified customers, each with a GBP account and a live session: their ids and tokens."""
    from sqlalchemy import text

    from config import Settings
    from models.database import async_engine
    from services.auth import AuthConfig
    from services.ledger import Ledger

    cfg = AuthConfig.from_settings(Settings(environment="test", database_url=database_url))
    engine = async_engine(database_url)
    users = [uuid.uuid4() for _ in range(CUSTOMERS)]
    sessions = [uuid.uuid4() for _ in range(CUSTOMERS)]
    now = datetime.now(UTC)
    try:
        async with engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO users (id, email, password_hash, kyc_tier, email_verified) "
                    "SELECT u, 'bench-' || u::text || '@example.com', 'x', 2, true "
                    "FROM unnest(CAST(:u AS uuid[])) u"
                ),
                {"u": users},
            )
            await c.execute(
                text(
                    "INSERT INTO auth_sessions "
                    "(id, user_id, refresh_token_hash, device_fingerprint, expires_at) "
                    "SELECT s, u, md5(s::text) || md5(u::text), 'bench', now() + interval '1 day' "
                    "FROM unnest(CAST(:s AS uuid[]), CAST(:u AS uuid[])) AS t(s, u)"
                ),
                {"s": sessions, "u": users},
            )
        ledger = Ledger(engine)
        for uid in users:
            await ledger.customer_account(uid, "GBP")
    finally:
        await engine.dispose()
    tokens = [
        cfg.tokens.issue("access", uid, now=now, ttl=timedelta(hours=2), sid=str(sid))
        for uid, sid in zip(users, sessions, strict=True)
    ]
    return users, tokens


class Driver:
    """Posts deposits through the real ledger and notes when each commit returned."""

    def __init__(self, database_url: str) -> None:
        from models.database import async_engine
        from services.ledger import Ledger

        self.engine = async_engine(database_url)
        self.ledger = Ledger(self.engine)
        self.balances: dict[uuid.UUID, Decimal] = {}

    async def post(self, user_id: uuid.UUID, amount: Decimal) -> tuple[str, str, float]:
        from models.money import money
        from services.ledger import House, HouseAccount, Leg, Posting

        account = await self.ledger.customer_account(user_id, "GBP")
        await self.ledger.post(
            Posting(
                reference_type="DEPOSIT",
                reference_id=uuid.uuid4(),
                step="credit",
                legs=[Leg(House(HouseAccount.BANK_CASH), "GBP", -amount), Leg(account, "GBP", amount)],
            )
        )
        committed = time.time()
        self.balances[user_id] = self.balances.get(user_id, Decimal(0)) + amount
        return str(user_id), money(self.balances[user_id], "GBP"), committed

    async def postings(self, users: list[uuid.UUID]) -> list[tuple[str, str, float]]:
        out = []
        interval = 1 / POSTINGS_PER_S
        start = time.perf_counter()
        for i, uid in enumerate(users):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            out.append(await self.post(uid, Decimal(random.randint(1, 500))))
        return out

    async def counters(self) -> tuple[int, int]:
        """(the database's transactions, scans of the tables the feed reads) so far."""
        from sqlalchemy import text

        async with self.engine.connect() as c:
            await c.execute(text("SELECT pg_stat_clear_snapshot()"))
            xacts = (
                await c.execute(
                    text(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = current_database()"
                    )
                )
            ).scalar_one()
            scans = (
                await c.execute(
                    text(
                        "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0) "
                        "FROM pg_stat_user_tables WHERE relname = ANY(:t)"
                    ),
                    {"t": list(FEED_TABLES)},
                )
            ).scalar_one()
        return int(xacts), int(scans)

    async def close(self) -> None:
        await self.engine.dispose()


def _latencies(
    sent: list[tuple[str, str, float]], received: list[tuple[str, str, float]]
) -> tuple[list[float], int]:
    """Milliseconds from each commit to the first balance message showing it (deposits only add, so the
    first balance at or above the one the posting made; two postings a load apart share one message); and
    how many postings no message ever showed."""
    by_user: dict[str, list[tuple[float, Decimal]]] = {}
    for user_id, balance, at in received:
        by_user.setdefault(user_id, []).append((at, Decimal(balance)))
    for arrivals in by_user.values():
        arrivals.sort()
    out: list[float] = []
    missing = 0
    for user_id, balance, committed in sent:
        shown = next((at for at, b in by_user.get(user_id, []) if b >= Decimal(balance)), None)
        if shown is None:
            missing += 1
        else:
            out.append((shown - committed) * 1000)
    return out, missing


def _phase(
    loop: asyncio.AbstractEventLoop,
    driver: Driver,
    ws_url: str,
    workdir: Path,
    tokens: list[str],
    targets: list[uuid.UUID],
    processes: int,
    measure_idle: bool,
) -> dict[str, Any]:
    group = ClientGroup(ws_url, tokens, processes, workdir)
    group.wait_ready()
    result: dict[str, Any] = {"clients": len(tokens)}
    if measure_idle:
        time.sleep(IDLE_SETTLE_SECONDS)
        xacts0, scans0 = loop.run_until_complete(driver.counters())
        time.sleep(IDLE_SECONDS)
        xacts1, scans1 = loop.run_until_complete(driver.counters())
        own = 1  # the first sample's own transaction is counted in the second
        result["idle_transactions_per_s"] = round(max(xacts1 - xacts0 - own, 0) / IDLE_SECONDS, 2)
        result["idle_feed_table_scans_per_s"] = round((scans1 - scans0) / IDLE_SECONDS, 2)
    time.sleep(1.0)  # the snapshot messages are in; start clean
    sent = loop.run_until_complete(driver.postings(targets))
    time.sleep(2.0)  # let the last messages arrive
    received, closed = group.stop()
    latencies, missing = _latencies(sent, received)
    result.update({"postings": len(sent), "missing": missing, "closed_early": closed, **summary(latencies)})
    return result


NOTIFY_CONCURRENCY = 8
NOTIFY_SECONDS = 5
ACCOUNT_SCRIPT = """\\set n random(1, {customers})
UPDATE accounts SET balance = balance + 1, available_balance = available_balance + 1
 WHERE id = (SELECT id FROM bench_ws_accounts WHERE n = :n);
"""


def _notify_cost(port: int, database_url: str, workdir: Path) -> dict[str, float]:
    """pgbench tps of one-row customer account updates with the NOTIFY trigger, and without it."""
    import re

    import psycopg

    from devstack.postgres import pgbench_path
    from services.live_updates import libpq_dsn

    database = database_url.rsplit("/", 1)[1]
    script = workdir / "accounts.sql"
    script.write_text(ACCOUNT_SCRIPT.format(customers=CUSTOMERS))

    def tps() -> float:
        args = [
            str(pgbench_path()), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n",
            "-c", str(NOTIFY_CONCURRENCY), "-j", "2", "-T", str(NOTIFY_SECONDS), "-f", str(script), database,
        ]  # fmt: skip
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        found = re.search(r"tps = ([0-9.]+)", out)
        return float(found.group(1)) if found else float("nan")

    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as c:
        c.execute(
            "CREATE TABLE bench_ws_accounts AS SELECT row_number() OVER () AS n, id FROM accounts "
            "WHERE kind = 'customer'"
        )
        c.execute("CREATE UNIQUE INDEX ON bench_ws_accounts (n)")
        c.execute("TRUNCATE live_listeners")
        nobody_listening = tps()
        c.execute("INSERT INTO live_listeners SELECT user_id, 0 FROM accounts WHERE kind = 'customer'")
        everyone_listening = tps()
        c.execute("TRUNCATE live_listeners")
        c.execute("ALTER TABLE accounts DISABLE TRIGGER accounts_live_updates_update")
        no_trigger = tps()
        c.execute("ALTER TABLE accounts ENABLE TRIGGER accounts_live_updates_update")
    return {
        "tps_no_trigger": no_trigger,
        "tps_trigger_nobody_listening": nobody_listening,
        "tps_trigger_everyone_listening": everyone_listening,
    }


def main() -> None:
    import tempfile

    with throwaway_postgres("bench_ws") as (pg, database_url), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        loop = asyncio.new_event_loop()
        users, tokens = loop.run_until_complete(_setup(database_url))
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "ENVIRONMENT": "test",
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "MARKET_DATA_STREAMS": "false",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "bench.ws:bench_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--no-proxy-headers",
                *WS_ARGS,
            ],
            cwd=ROOT,
            env=env,
        )
        driver = Driver(database_url)
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            ws_url = f"ws://127.0.0.1:{port}/api/v1/ws"
            one = _phase(loop, driver, ws_url, workdir, tokens[:1], [users[0]] * (POSTINGS // 2), 1, False)
            targets = random.sample(users, POSTINGS)
            many = _phase(loop, driver, ws_url, workdir, tokens, targets, LOAD_PROCESSES, True)
        finally:
            loop.run_until_complete(driver.close())
            loop.close()
            server.terminate()
            server.wait(10)
        notify = _notify_cost(pg.port, database_url, workdir)
    rows = [
        (f"{m['clients']} client(s)", m["postings"], m["missing"], m["p50_ms"], m["p99_ms"], m["mean_ms"])
        for m in (one, many)
    ]
    print_table(
        f"commit -> balance message over the WebSocket ({POSTINGS_PER_S:.0f} postings/s)",
        ["clients", "postings", "missing", "p50 ms", "p99 ms", "mean ms"],
        rows,
    )
    print(
        f"\nidle, {many['clients']} sockets: {many['idle_transactions_per_s']} database transactions/s "
        f"(autovacuum included), {many['idle_feed_table_scans_per_s']} scans/s of the feed's tables"
    )
    print(
        f"one-row customer account updates, {NOTIFY_CONCURRENCY} pgbench clients: "
        f"{notify['tps_no_trigger']:.0f} tps without the trigger, "
        f"{notify['tps_trigger_nobody_listening']:.0f} with it and no socket open, "
        f"{notify['tps_trigger_everyone_listening']:.0f} with every customer listened for (NOTIFY each)"
    )
    write_result(
        "ws",
        metric="balance_p99_ms_1000_clients",
        value=many["p99_ms"],
        reference=one["p99_ms"],
        extra={
            "customers": CUSTOMERS,
            "load_processes": LOAD_PROCESSES,
            "postings_per_s": POSTINGS_PER_S,
            "idle_seconds": IDLE_SECONDS,
            "idle_transactions_per_s": many["idle_transactions_per_s"],
            "idle_feed_table_scans_per_s": many["idle_feed_table_scans_per_s"],
            "one_client": one,
            "many_clients": many,
            "notify_cost": {"concurrency": NOTIFY_CONCURRENCY, "seconds": NOTIFY_SECONDS, **notify},
        },
    )


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--clients":
    _clients_main(sys.argv[2:])

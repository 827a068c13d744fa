"""`make bench BENCH=api`: authenticated `GET /api/v1/accounts/balances` under load, beside `/healthz`.

Also printed: the CPU milliseconds each request cost the API process, PostgreSQL and the load
processes. On the 2-core machine all three share the CPU, and `/healthz` costs the load generator
(an httpx client in Python) several times what it costs the API: its req/s is mostly the load
generator's speed, which is why the ratio cannot say how much faster the API could serve balances.

The API runs under uvicorn (one process, as `make run` starts it) in a subprocess against a throw-away
PostgreSQL; the load comes from `LOAD_PROCESSES` other processes, each an asyncio httpx client holding its
share of `CONNECTIONS` keep-alive connections on loopback and sending back to back for `SECONDS`. The rate
limits are production's (1000 requests a minute per customer, counted in PostgreSQL): each connection is
a customer of its own, as real traffic is, so the limit is checked on every request and never reached
(a 429 would count as an error).

`/healthz` (no auth, no database) is the reference in the same run: the ratio says what authentication
(JWT check + one session query) and the balances query cost on top of the bare framework.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import psutil

from bench._cpu import postmaster_pid
from bench.common import print_table, summary, throwaway_postgres, write_result
from devstack.ports import free_port

CONNECTIONS = 64
LOAD_PROCESSES = 4
SECONDS = 8.0
WARMUP_SECONDS = 1.5
PASSWORD = "Bench-Password-123!"
ROOT = Path(__file__).resolve().parent.parent


def bench_app() -> Any:
    """uvicorn factory for the run: the production app, production rate limits."""
    from api.main import create_app

    return create_app()


# --- the load generator (runs in its own process) -------------------------------------------------


async def _load(url: str, tokens: list[str | None], seconds: float, warmup: float) -> dict[str, Any]:
    """One connection per token (None: unauthenticated), back to back until the end."""
    connections = len(tokens)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    errors = 0
    sent = 0  # warm-up included: what this process's CPU time was spent on
    cpu_before = time.process_time()
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:
        start = time.perf_counter()
        measure_from = start + warmup
        stop = measure_from + seconds

        async def worker(token: str | None) -> None:
            nonlocal errors, sent
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            while True:
                t0 = time.perf_counter()
                if t0 >= stop:
                    return
                r = await client.get(url, headers=headers)
                sent += 1
                t1 = time.perf_counter()
                if t0 >= measure_from:
                    if r.status_code == 200:
                        latencies.append((t1 - t0) * 1000)
                    else:
                        errors += 1

        await asyncio.gather(*(worker(token) for token in tokens))
    cpu_s = time.process_time() - cpu_before
    return {"latencies": latencies, "errors": errors, "seconds": seconds, "sent": sent, "cpu_s": cpu_s}


def _load_main(argv: list[str]) -> None:
    """A load process: its connections' tokens arrive on stdin (JSON), not in argv (ps shows argv)."""
    url, seconds, warmup = argv[0], float(argv[1]), float(argv[2])
    tokens: list[str | None] = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(_load(url, tokens, seconds, warmup))))


def _cpu_s(roots: tuple[int, ...]) -> float:
    """CPU seconds so far of the `roots` processes and their live descendants."""
    total = 0.0
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                t = proc.cpu_times()
                total += t.user + t.system
        except psutil.Error:
            continue
    return total


def run_load(
    url: str, tokens: list[str] | None, *, api: tuple[int, ...] = (), postgres: tuple[int, ...] = ()
) -> dict[str, Any]:
    """`CONNECTIONS` connections over `LOAD_PROCESSES` processes; connection i uses tokens[i % len]
    (None: unauthenticated). With the API's and PostgreSQL's pids, also the CPU milliseconds each
    request cost the API, PostgreSQL and the load processes themselves (on 2 cores they share the CPU,
    so the req/s of a cheap endpoint says as much about the load generator as about the API)."""
    cpu_before = {"api": _cpu_s(api), "postgres": _cpu_s(postgres)}
    per = CONNECTIONS // LOAD_PROCESSES
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.api", "--load", url, str(SECONDS), str(WARMUP_SECONDS)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(LOAD_PROCESSES)
    ]
    for p, proc in enumerate(procs):
        mine = [tokens[(p * per + i) % len(tokens)] if tokens else None for i in range(per)]
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(mine))
        proc.stdin.close()
    results = []
    for proc in procs:
        assert proc.stdout is not None
        results.append(json.loads(proc.stdout.read()))
        proc.wait()
    latencies = [lat for r in results for lat in r["latencies"]]
    errors = sum(r["errors"] for r in results)
    sent = max(sum(r["sent"] for r in results), 1)
    cpu_ms = {
        "api": (_cpu_s(api) - cpu_before["api"]) * 1000 / sent if api else None,
        "postgres": (_cpu_s(postgres) - cpu_before["postgres"]) * 1000 / sent if postgres else None,
        "load": sum(r["cpu_s"] for r in results) * 1000 / sent,
    }
    return {
        "rps": len(latencies) / SECONDS,
        "errors": errors,
        "requests": len(latencies),
        "cpu_ms_per_request": {k: None if v is None else round(v, 3) for k, v in cpu_ms.items()},
        **summary(latencies),
    }


# --- the benchmark --------------------------------------------------------------------------------


async def customers(database_url: str, n: int = CONNECTIONS) -> list[str]:
    """`n` verified customers with GBP, BTC and ETH account rows: their emails."""
    from sqlalchemy import text

    from models.database import async_engine
    from services.ledger import Ledger
    from services.passwords import hash_password

    engine = async_engine(database_url)
    password_hash = hash_password(PASSWORD)
    emails = []
    try:
        ledger = Ledger(engine)
        for _ in range(n):
            email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
            uid = uuid.uuid4()
            async with engine.begin() as c:
                await c.execute(
                    text(
                        "INSERT INTO users (id, email, password_hash, kyc_tier, email_verified) "
                        "VALUES (:i, :e, :p, 2, true)"
                    ),
                    {"i": uid, "e": email, "p": password_hash},
                )
            for currency in ("GBP", "BTC", "ETH"):
                await ledger.customer_account(uid, currency)
            emails.append(email)
    finally:
        await engine.dispose()
    return emails


class ServedApi(NamedTuple):
    base: str  # the base URL
    pid: int  # uvicorn's process (with `--workers`, the supervisor of the API processes)


@contextmanager
def serve_api(database_url: str, processes: int = 1) -> Iterator[ServedApi]:
    """The API under uvicorn in a subprocess, `processes` of them on one port (uvicorn's `--workers`, as
    `make run` starts `API_PROCESSES`): its base URL once `/healthz` answers."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "API_PROCESSES": str(processes),
    }
    workers = ["--workers", str(processes)] if processes > 1 else []
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bench.api:bench_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log", "--no-proxy-headers", *workers],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        time.sleep(1.0 if processes > 1 else 0)  # every process up, not only the first to answer
        yield ServedApi(base, server.pid)
    finally:
        server.terminate()
        server.wait(20)


def login_tokens(base: str, emails: list[str]) -> list[str]:
    """An access token for each customer, each checked by one balances request."""
    tokens = []
    for email in emails:
        r = httpx.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10)
        r.raise_for_status()
        token: str = r.json()["access_token"]
        check = httpx.get(f"{base}/api/v1/accounts/balances", headers={"Authorization": f"Bearer {token}"})
        check.raise_for_status()
        tokens.append(token)
    return tokens


def main() -> None:
    with throwaway_postgres("bench_api") as (server, database_url):
        emails = asyncio.run(customers(database_url))
        postmaster = postmaster_pid(server.data_dir)
        postgres = (postmaster,) if postmaster else ()
        with serve_api(database_url) as (base, api):
            tokens = login_tokens(base, emails)
            healthz = run_load(f"{base}/healthz", None, api=(api,), postgres=postgres)
            balances = run_load(f"{base}/api/v1/accounts/balances", tokens, api=(api,), postgres=postgres)
    rows = [
        (
            name, f"{m['rps']:.0f}", m["p50_ms"], m["p99_ms"], m["requests"], m["errors"],
            *(m["cpu_ms_per_request"][k] for k in ("api", "postgres", "load")),
        )
        for name, m in (("GET /healthz", healthz), ("GET /api/v1/accounts/balances (auth)", balances))
    ]  # fmt: skip
    print_table(
        f"API on loopback, {CONNECTIONS} connections ({LOAD_PROCESSES} load processes), {SECONDS:.0f} s each",
        ["endpoint", "req/s", "p50 ms", "p99 ms", "requests", "errors", "CPU ms: API", "PostgreSQL", "load"],
        rows,
    )
    write_result(
        "api",
        metric="balances_rps",
        value=balances["rps"],
        reference=healthz["rps"],
        extra={
            "connections": CONNECTIONS,
            "customers": CONNECTIONS,
            "rate_limits": "production (1000/min per customer, in PostgreSQL)",
            "load_processes": LOAD_PROCESSES,
            "seconds": SECONDS,
            "balances": balances,
            "healthz": healthz,
        },
    )


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--load":
    _load_main(sys.argv[2:])

"""`make bench BENCH=scale`: authenticated `GET /api/v1/accounts/balances` with two API processes ÷ one.

The same throw-away PostgreSQL, customer and load as `bench/api.py` (`LOAD_PROCESSES` client processes
holding `CONNECTIONS` keep-alive connections), against the API served first by one uvicorn process, then by
two on the one port (`API_PROCESSES=2`, uvicorn's `--workers`, as `make run` starts them); production's
rate limits (in PostgreSQL, shared by both), one customer per connection. The reference is the
one-process figure of the same run. On a machine with N free cores the ratio can approach min(N, 2); on
2 cores shared with the load generator and PostgreSQL it says more about the machine than about the API.
"""

from __future__ import annotations

import asyncio
import os

from bench.api import CONNECTIONS, LOAD_PROCESSES, SECONDS, customers, login_tokens, run_load, serve_api
from bench.common import print_table, throwaway_postgres, write_result


def main() -> None:
    with throwaway_postgres("bench_scale") as (_, database_url):
        emails = asyncio.run(customers(database_url))
        # Logged in once (64 logins twice from one address would pass the per-address limit of
        # anonymous requests): the sessions are in PostgreSQL, so the two-process API takes the tokens.
        with serve_api(database_url, 1) as (base, _):
            tokens = login_tokens(base, emails)
            one = run_load(f"{base}/api/v1/accounts/balances", tokens)
        with serve_api(database_url, 2) as (base, _):
            two = run_load(f"{base}/api/v1/accounts/balances", tokens)
    rows = [
        (f"{n} API process{'es' if n > 1 else ''}", f"{m['rps']:.0f}", m["p50_ms"], m["p99_ms"], m["errors"])
        for n, m in ((1, one), (2, two))
    ]
    print_table(
        f"GET /api/v1/accounts/balances (auth), {CONNECTIONS} connections, {SECONDS:.0f} s each, "
        f"{os.cpu_count()} CPUs",
        ["API", "req/s", "p50 ms", "p99 ms", "errors"],
        rows,
    )
    write_result(
        "scale",
        metric="balances_rps_two_api_processes",
        value=two["rps"],
        reference=one["rps"],
        extra={
            "reference_metric": "balances_rps_one_api_process",
            "connections": CONNECTIONS,
            "load_processes": LOAD_PROCESSES,
            "cpus": os.cpu_count(),
            "one_process": one,
            "two_processes": two,
        },
    )

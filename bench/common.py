"""Shared benchmark plumbing: a throw-away stack, latency statistics, the results table and file.

Benchmarks measure; they never assert. Each compares against a reference measured in the same run
on the same machine (pgbench, a no-op workflow, a bare endpoint), because absolute numbers move
about 2x with machine load while ratios hold.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from devstack import migrate
from devstack.ports import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.temporal_server import temporal_binary
from temporal import search_attributes

RESULTS = Path(__file__).resolve().parent / "results"


@contextmanager
def throwaway_postgres(database: str = "bench") -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A fresh embedded PostgreSQL with migrations applied; removed afterwards."""
    data = Path(tempfile.mkdtemp(prefix="broker-bench-pg-"))
    server = EmbeddedPostgres(data / "pgdata", free_port())
    server.start()
    try:
        url = server.create_database(database)
        migrate.upgrade(url)
        yield server, url
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


@asynccontextmanager
async def throwaway_temporal() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
    )
    try:
        yield env
    finally:
        await env.shutdown()


def percentile(samples: Sequence[float], p: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(samples_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(samples_ms, 50), 2),
        "p99_ms": round(percentile(samples_ms, 99), 2),
        "mean_ms": round(statistics.fmean(samples_ms), 2) if samples_ms else float("nan"),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)))
    print(line)
    for row in cells[1:]:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def write_result(name: str, *, metric: str, value: float, reference: float, extra: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` with the headline figure and its same-run reference."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    ratio = value / reference if reference else float("nan")
    path = RESULTS / f"{name}.json"
    body = {
        "metric": metric,
        "value": round(value, 4),
        "reference": round(reference, 4),
        "ratio": round(ratio, 4),
        **extra,
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n")
    print(f"\n{name}: {metric} = {value:.2f} vs reference {reference:.2f} -> ratio {ratio:.3f}  ({path})")
    return path

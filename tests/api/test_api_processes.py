"""`API_PROCESSES` API processes behind one port, as `make run` starts them (`api.main.uvicorn_args`), and
`WORKER_PROCESSES` workers: the per-IP limit holds across the API processes (the counts are in
PostgreSQL), and a killed API process is replaced."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, text

from api.main import uvicorn_args
from config import Settings
from devstack.ports import free_port
from devstack.stack import worker_children

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def two_api_processes(settings: Settings) -> Iterator[tuple[str, psutil.Process]]:
    port = free_port()
    launch = settings.model_copy(update={"api_port": port, "api_host": "127.0.0.1", "api_processes": 2})
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        "API_PROCESSES": "2",
        "MARKET_DATA_STREAMS": "false",
        "SENDGRID_HOST": "http://127.0.0.1:9",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *uvicorn_args(launch), "--log-level", "warning"], cwd=ROOT, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        parent = psutil.Process(child.pid)
        while len(_api_processes(parent)) < 2 or not _healthy(base):
            assert child.poll() is None and time.monotonic() < deadline, "the API processes did not start"
            time.sleep(0.2)
        yield base, parent
    finally:
        child.terminate()
        child.wait(30)


def _api_processes(parent: psutil.Process) -> list[psutil.Process]:
    """uvicorn's worker processes (spawned), not multiprocessing's resource tracker or zombies."""
    found = []
    for p in parent.children():
        with contextlib.suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(p.cmdline()):
                found.append(p)
    return found


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_api_processes_on_one_port_share_the_per_ip_limit(settings: Settings) -> None:
    assert uvicorn_args(settings)[-1] == "--no-proxy-headers"  # one process: no --workers
    sync = create_engine(settings.database_url.replace("postgresql://", "postgresql+psycopg://"))

    def forget_local_address() -> None:
        """Other tests' servers are reached from 127.0.0.1 too: start with its window empty, leave it so."""
        with sync.begin() as conn:
            conn.execute(text("DELETE FROM rate_limit_windows WHERE key = 'ip:127.0.0.1'"))

    with contextlib.ExitStack() as cleanup, two_api_processes(settings) as (base, parent):
        cleanup.callback(sync.dispose)
        cleanup.callback(forget_local_address)
        forget_local_address()
        statuses = []
        for _ in range(101):  # a new connection each time: the kernel hands them to either process
            r = httpx.get(f"{base}/api/v1/auth/me", headers={"Connection": "close"}, timeout=10)
            statuses.append(r.status_code)
        assert statuses[:100] == [401] * 100 and statuses[100] == 429  # 100/min per IP, all processes

        victim = _api_processes(parent)[0]
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while not (len(now := _api_processes(parent)) == 2 and victim.pid not in {p.pid for p in now}):
            assert time.monotonic() < deadline, "the killed API process was not replaced"
            time.sleep(0.2)
        assert _healthy(base)


def test_make_run_starts_worker_processes_as_configured(settings: Settings, tmp_path: Path) -> None:
    assert [c.name for c in worker_children(settings, {}, tmp_path)] == ["worker"]
    three = worker_children(settings.model_copy(update={"worker_processes": 3}), {"X": "1"}, tmp_path)
    assert [c.name for c in three] == ["worker-1", "worker-2", "worker-3"]
    assert {c.log_path for c in three} == {tmp_path / f"worker-{i}.log" for i in (1, 2, 3)}
    assert all(c.argv[-2:] == ["-m", "workers"] and c.env == {"X": "1"} for c in three)

"""Two API processes and two worker processes over one PostgreSQL and one Temporal dev server.

The world (its own database and Temporal server, the sandbox venues, bank and mail sink, worker
processes the test can SIGKILL) is the fault test's (`tests/faults/conftest.py`); on top of it this
package starts two real API processes, each `python -m uvicorn` with the arguments `make run` gives it
(`api.main.uvicorn_args`), on a port of its own, so the test chooses which process each request reaches.
`API_PROCESSES=2` and `WORKER_PROCESSES=2` are set in every process's environment, so the connection
budget each one checks at start is the one of this configuration. The fault world's in-process API
remains for the set-up (logins, 2FA, deposit instructions, the bank's webhooks); it is not under test.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from api.main import uvicorn_args
from devstack.ports import free_port
from tests.faults import conftest as faults
from tests.faults.conftest import FaultWorld

world = faults.world  # the fault world fixture, for this package too
ROOT = Path(__file__).resolve().parents[2]
# Small enough to reach in a test, large enough for the traffic of the test's customers.
USER_PER_MINUTE = 40
SCALE_ENV = {"API_PROCESSES": "2", "WORKER_PROCESSES": "2"}


@dataclass
class ApiProcess:
    name: str
    url: str
    process: asyncio.subprocess.Process


async def _start_api(world: FaultWorld, name: str) -> ApiProcess:
    port = free_port()
    launch = world.settings.model_copy(update={"api_host": "127.0.0.1", "api_port": port, "api_processes": 1})
    env = {
        **world.worker_env(),
        **SCALE_ENV,
        "API_PORT": str(port),
        "RATE_LIMIT_USER_PER_MINUTE": str(USER_PER_MINUTE),
        # Production limits otherwise: 100/min per IP, 10 withdrawals/h per customer.
    }
    log = open(world.logs / f"{name}.log", "wb")  # noqa: SIM115 (the child's)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", *uvicorn_args(launch), "--log-level", "warning",
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    return ApiProcess(name, f"http://127.0.0.1:{port}", proc)


async def _healthy(api: ApiProcess, http: httpx.AsyncClient, logs: Path, timeout: float = 90) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        assert api.process.returncode is None, f"{api.name} exited; see {logs / api.name}.log"
        try:
            if (await http.get(f"{api.url}/healthz", timeout=2)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert loop.time() < deadline, f"{api.name} did not start; see {logs / api.name}.log"
        await asyncio.sleep(0.2)


@pytest_asyncio.fixture
async def scaled(
    world: FaultWorld,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[FaultWorld, list[ApiProcess]]]:
    """The fault world with two API processes (started here) and two worker processes (started and
    polling), every process configured as one of two of its kind."""
    for key, value in SCALE_ENV.items():
        monkeypatch.setenv(key, value)  # read by FaultWorld.worker_env for the workers
    apis: list[ApiProcess] = []
    try:
        apis = [await _start_api(world, "api-a"), await _start_api(world, "api-b")]
        workers = [await world.start_worker(), await world.start_worker()]
        await asyncio.gather(
            *(_healthy(a, world.http, world.logs) for a in apis), *(world.polling(w) for w in workers)
        )
        yield world, apis
    finally:
        await world.stop_workers()
        for api in apis:
            if api.process.returncode is None:
                api.process.terminate()
                try:
                    await asyncio.wait_for(api.process.wait(), timeout=20)
                except TimeoutError:
                    api.process.kill()
                    await api.process.wait()

"""`make run`: the whole broker on one machine, and `make migrate` / `make clean` helpers.

Order of start: PostgreSQL (unless DATABASE_URL) -> Temporal dev server with Web UI (unless
TEMPORAL_ADDRESS) -> migrations -> sandboxes -> workers -> API. A worker or API that dies is started
again with back-off (`devstack.supervisor`) while the rest stays up; Temporal or the sandboxes dying
stops the stack. Ctrl-C (or SIGTERM) stops everything this process started, in reverse, and leaves
nothing behind.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from api.main import uvicorn_args
from config import Settings, get_settings
from devstack import migrate as migrations
from devstack.floats import align_sandbox_floats, forget_sandbox_fills
from devstack.ports import ensure_free, wait_for_port
from devstack.postgres import EmbeddedPostgres
from devstack.processes import Child, python_module
from devstack.supervisor import Supervisor
from devstack.temporal_server import dev_server, wait_ready

ROOT = Path(__file__).resolve().parent.parent

# Offsets from SANDBOX_PORT for each local stand-in of the outside world (one port each, because
# ccxt's Kraken signs the URL path and needs a venue at the root).
SANDBOX_OFFSETS = {
    "binance": 0,
    "kraken": 1,
    "otc": 2,
    "bank": 3,
    "mail": 4,
    "chain": 5,
    "kyc": 6,
    "twilio": 7,
    "ops_webhook": 8,
}


def local_dir(settings: Settings) -> Path:
    d = (ROOT / settings.local_dir).resolve()
    d.mkdir(parents=True, exist_ok=True)
    return d


def local_postgres(settings: Settings) -> EmbeddedPostgres:
    return EmbeddedPostgres(local_dir(settings) / "postgres", settings.postgres_port)


def local_database_url(settings: Settings) -> str:
    return local_postgres(settings).url("broker")


def sandbox_urls(settings: Settings) -> dict[str, str]:
    return {name: f"http://127.0.0.1:{settings.sandbox_port + off}" for name, off in SANDBOX_OFFSETS.items()}


def sandbox_env(settings: Settings) -> dict[str, str]:
    """Point each outside-world URL that is not configured at its local sandbox."""
    urls = sandbox_urls(settings)
    env: dict[str, str] = {}
    for name, setting in (
        ("binance", "binance_url"),
        ("kraken", "kraken_url"),
        ("otc", "otc_url"),
        ("bank", "bank_url"),
        ("mail", "sendgrid_host"),
        ("kyc", "kyc_url"),
        ("twilio", "twilio_url"),
    ):
        if not getattr(settings, setting):
            env[setting.upper()] = urls[name]
    env["SENDGRID_EVENT_WEBHOOK_URL"] = (
        f"http://127.0.0.1:{settings.api_port}/api/v1/webhooks/sendgrid/events"
    )
    if not settings.ops_alert_webhook_url:
        env["OPS_ALERT_WEBHOOK_URL"] = f"{urls['ops_webhook']}/services/ops/alerts"
    return env


def _wait_http(url: str, timeout: float, child: Child) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited during start-up; see its log")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{child.name} did not answer on {url}")


def worker_children(settings: Settings, env: dict[str, str], logs: Path) -> list[Child]:
    """`WORKER_PROCESSES` worker processes, each serving every task queue with its own log. (The API's
    `API_PROCESSES` are uvicorn's `--workers` behind one port: `api.main.uvicorn_args`.)"""
    n = settings.worker_processes
    names = ["worker"] if n == 1 else [f"worker-{i}" for i in range(1, n + 1)]
    return [Child(name, python_module("workers"), env=env, log_path=logs / f"{name}.log") for name in names]


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.children: list[Child] = []
        self.supervisor = Supervisor()
        self.postgres: EmbeddedPostgres | None = None
        self.logs = local_dir(settings) / "logs"
        self.logs.mkdir(exist_ok=True)

    def _start(self, child: Child, *, restart: bool = False) -> Child:
        """Start a child; `restart` children (stateless: workers, the API) are brought back when they die."""
        child.start()
        self.children.append(child)
        self.supervisor.watch(child, restart=restart)
        return child

    def up(self) -> dict[str, str]:
        s = self.settings
        shown: dict[str, str] = {}
        ensure_free(s.api_port, "api_port")
        if not s.database_url:
            self.postgres = local_postgres(s)
            self.postgres.start()
            database_url = self.postgres.create_database("broker")
            shown["PostgreSQL"] = f"127.0.0.1:{s.postgres_port} (data in {self.postgres.data_dir})"
        else:
            database_url = s.database_url
            shown["PostgreSQL"] = "DATABASE_URL"
        if not s.temporal_address:
            temporal = dev_server(
                s.temporal_port,
                s.temporal_ui_port,
                local_dir(s) / "temporal.sqlite",
                self.logs / "temporal.log",
            )
            self._start(temporal)
            wait_ready(s.temporal_port, s.temporal_ui_port)
            temporal_address = f"127.0.0.1:{s.temporal_port}"
            shown["Temporal"] = temporal_address
            shown["Temporal Web UI"] = f"http://localhost:{s.temporal_ui_port}"
        else:
            temporal_address = s.temporal_address
            shown["Temporal"] = f"{temporal_address} (TEMPORAL_ADDRESS)"
        migrations.upgrade(database_url)
        shown["Migrations"] = "applied"

        env = {"DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal_address, **sandbox_env(s)}
        # A confirmed bank account waits out its cooling-off (24 h by default) before it can be paid:
        # short here so `make demo` can withdraw, unless set explicitly.
        if s.environment != "production" and "bank_account_cooling_off_seconds" not in s.model_fields_set:
            env["BANK_ACCOUNT_COOLING_OFF_SECONDS"] = "5"
        # Likewise the FCA first-trade cooling-off (24 h; production refuses less): short for `make demo`.
        if s.environment != "production" and "first_trade_cooling_off_seconds" not in s.model_fields_set:
            env["FIRST_TRADE_COOLING_OFF_SECONDS"] = "5"
        if (ROOT / "sandbox" / "__main__.py").exists():
            for off in SANDBOX_OFFSETS.values():
                ensure_free(s.sandbox_port + off, "sandbox_port")
            sandbox = self._start(
                Child(
                    "sandbox",
                    python_module("sandbox", "--base-port", str(s.sandbox_port)),
                    env=env,
                    log_path=self.logs / "sandbox.log",
                )
            )
            for name, url in sandbox_urls(s).items():
                wait_for_port(int(url.rsplit(":", 1)[1]), 20)
                shown[f"Sandbox {name}"] = url
            del sandbox
            if not any((s.binance_url, s.kraken_url, s.otc_url, s.bank_url)):
                booked = align_sandbox_floats(s, database_url)
                shown["Opening floats"] = ", ".join(booked) or "the books agree with the sandboxes"
                if forgotten := forget_sandbox_fills(database_url):
                    shown["Earlier fills"] = (
                        f"{forgotten} from earlier runs marked reconciled (new sandboxes)"
                    )
        for worker in worker_children(s, env, self.logs):
            self._start(worker, restart=True)
        shown["Workers"] = (
            f"{s.worker_processes} process(es), all task queues (logs: {self.logs}/worker*.log)"
        )
        api = self._start(
            Child(
                "api",
                python_module("uvicorn", *uvicorn_args(s)),
                env=env,
                log_path=self.logs / "api.log",
            ),
            restart=True,
        )
        # Up to 90 s: outside tests each API process loads the name-matching data before it serves.
        _wait_http(f"http://127.0.0.1:{s.api_port}/healthz", 90, api)
        shown["API"] = (
            f"http://localhost:{s.api_port}, {s.api_processes} process(es)  (docs: /docs, readiness: /readyz)"
        )
        return shown

    def down(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        if self.postgres is not None:
            self.postgres.stop()

    def watch(self) -> str | None:
        """Block until a signal or until a child the stack cannot restart dies; return its name, if any.
        Dead workers and API processes are started again meanwhile (`Supervisor.poll`)."""
        stop = {"flag": False}

        def _handler(signum: int, frame: FrameType | None) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)
        while not stop["flag"]:
            dead = self.supervisor.poll()
            if dead is not None:
                return dead
            time.sleep(0.2)
        return None


def run() -> int:
    settings = get_settings()
    stack = Stack(settings)
    try:
        shown = stack.up()
    except BaseException as e:
        stack.down()
        if isinstance(e, KeyboardInterrupt):
            return 130
        print(f"\nstart-up failed: {e}", file=sys.stderr)
        return 1
    width = max(len(k) for k in shown)
    print("\nThe broker is up:")
    for k, v in shown.items():
        print(f"  {k:<{width}}  {v}")
    print(f"\nLogs in {stack.logs}. Ctrl-C stops everything.\n", flush=True)
    dead = stack.watch()
    print("\nstopping..." if dead is None else f"\n{dead} exited; stopping the rest...", flush=True)
    stack.down()
    print("stopped.")
    return 0 if dead is None else 1


def migrate() -> int:
    settings = get_settings()
    if settings.database_url:
        migrations.upgrade(settings.database_url)
        return 0
    pg = local_postgres(settings)
    was_running = pg.is_running()
    if not was_running:
        pg.start()
    try:
        migrations.upgrade(pg.create_database("broker"))
    finally:
        if not was_running:
            pg.stop()
    print("migrations applied")
    return 0


def stop() -> int:
    local_postgres(get_settings()).stop()
    return 0

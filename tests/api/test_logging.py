"""Structured JSON request logs with request ids, and auth events in the log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.api.conftest import bearer, login, register


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == logger]


async def test_every_request_is_logged_as_json_with_its_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="api.access"):
        r = await client.get(
            "/api/v1/auth/sessions", headers={**bearer(tokens), "X-Request-ID": "req-abc.123"}
        )
        assert r.headers["x-request-id"] == "req-abc.123"
        bad = await client.delete(
            "/api/v1/auth/sessions/0b4b1e3c-0000-0000-0000-000000000000",
            headers={"X-Request-ID": "bad id with spaces"},
        )
        assert bad.status_code == 401
        generated = bad.headers["x-request-id"]
        assert generated != "bad id with spaces" and len(generated) == 32
    ok, failed = _lines(caplog, "api.access")
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()
    assert ok["request_id"] == "req-abc.123" and ok["status"] == 200 and ok["method"] == "GET"
    assert ok["route"] == "/api/v1/auth/sessions" and ok["user_id"] == me["id"]
    assert isinstance(ok["latency_ms"], float) and ok["client_ip"]
    assert failed["route"] == "/api/v1/auth/sessions/{session_id}" and failed["status"] == 401
    assert failed["user_id"] is None and failed["request_id"] == generated


async def test_auth_events_are_logged(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="broker.auth"):
        email = await register(client)
        await client.post("/api/v1/auth/login", json={"email": email, "password": "Wrong-password-1"})
        await login(client, email)
    events = [line["event"] for line in _lines(caplog, "broker.auth")]
    assert events == ["auth.register", "auth.login.failed", "auth.login"]

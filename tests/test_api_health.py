"""Liveness, readiness, and the one error shape."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from api.main import create_app
from config import Settings
from devstack.ports import free_port


async def _get(app: FastAPI, path: str) -> httpx.Response:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)


async def test_healthz(settings: Settings) -> None:
    r = await _get(create_app(settings), "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_readyz_ready_with_postgres_and_temporal(settings: Settings) -> None:
    r = await _get(create_app(settings), "/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["checks"] == {"postgres": "ok", "temporal": "ok"}


async def test_readyz_503_names_temporal_when_it_is_down(settings: Settings) -> None:
    down = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    r = await _get(create_app(down), "/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["postgres"] == "ok"
    assert checks["temporal"].startswith("unavailable")


async def test_readyz_503_names_postgres_when_it_is_down(settings: Settings) -> None:
    down = settings.model_copy(
        update={"database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing"}
    )
    r = await _get(create_app(down), "/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["postgres"].startswith("unavailable")
    assert r.json()["checks"]["temporal"] == "ok"


async def test_unknown_route_is_a_problem_document(settings: Settings) -> None:
    r = await _get(create_app(settings), "/no/such/thing")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 404 and body["title"] == "Not Found" and body["instance"] == "/no/such/thing"


async def test_openapi_is_served(settings: Settings) -> None:
    r = await _get(create_app(settings), "/openapi.json")
    assert r.status_code == 200
    assert "/readyz" in r.json()["paths"]

"""Bad characters are a 422 naming the field, and infrastructure that is down is a 503 with Retry-After:
neither is ever a 500."""

from __future__ import annotations

import sys

import httpx
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ProblemError, unavailable_component
from config import Settings
from devstack.ports import free_port
from tests.api.conftest import (
    PASSWORD,
    AppClient,
    assert_problem,
    bearer,
    build_app,
    login,
    register,
    unique_email,
)


def _field(r: httpx.Response) -> str:
    body = assert_problem(r, 422, "control_character")
    field: str = body["errors"][0]["field"]
    return field


async def test_control_characters_are_refused_with_the_field_named(client: httpx.AsyncClient) -> None:
    register_url = "/api/v1/auth/register"
    r = await client.post(register_url, json={"email": f"a\u0000{unique_email()}", "password": PASSWORD})
    assert _field(r) == "body.email"
    r = await client.post(
        register_url, json={"email": unique_email(), "password": PASSWORD, "first_name": "Ann\u0000"}
    )
    assert _field(r) == "body.first_name"
    escape = {"email": unique_email(), "password": PASSWORD, "last_name": "\x1b[2J"}
    r = await client.post(register_url, json=escape)
    assert _field(r) == "body.last_name"
    for sneaky in ("\x85", "\u202egpj.exe", "\u2066x"):  # C1 control, bidi override and isolate
        r = await client.post(
            register_url, json={"email": unique_email(), "password": PASSWORD, "last_name": sneaky}
        )
        assert _field(r) == "body.last_name"
    undeclared = b'{"email": "x@example.com", "password": "Aa1-aaaaaaaa", "first_name": "\\u0000"}'
    r = await client.post(register_url, content=undeclared)  # no content type: still read as JSON
    assert _field(r) == "body.first_name"

    email = await register(client)
    tokens = await login(client, email)
    r = await client.patch("/api/v1/auth/me", json={"first_name": "Bob\u0000"}, headers=bearer(tokens))
    assert _field(r) == "body.first_name"
    r = await client.post(
        "/api/v1/withdrawal-addresses",
        json={"currency": "BTC", "address": "bc1qexampleexample00", "tag": "t\u0000", "label": "x"},
        headers=bearer(tokens),
    )
    assert _field(r) == "body.tag"
    r = await client.post(
        "/api/v1/withdrawal-addresses",
        json={"currency": "BTC", "address": "bc1qexampleexample00", "label": ["\u0000"]},
        headers=bearer(tokens),
    )
    assert _field(r) == "body.label.0"
    r = await client.get("/api/v1/auth/sessions", params={"label": "a\u0000b"}, headers=bearer(tokens))
    assert _field(r) == "query.label"
    r = await client.get("/api/v1/market/orderbook/BTC%00GBP")
    assert _field(r) == "path"

    padded = {"email": unique_email(), "password": PASSWORD, "first_name": "\u0000", "pad": "x" * (1 << 21)}
    assert_problem(await client.post(register_url, json=padded), 413, "body_too_large")

    deep = b"[" * 100_000 + b"]" * 100_000
    r = await client.post(register_url, content=deep, headers={"content-type": "application/json"})
    assert_problem(r, 422, "body_too_deep")
    # Also in a process whose recursion limit a library raised (py_ecc, under web3, sets 100,000): the
    # parser would overflow the C stack there and kill the process (a segfault in the full suite).
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        r = await client.post(register_url, content=deep, headers={"content-type": "application/json"})
    finally:
        sys.setrecursionlimit(limit)
    assert_problem(r, 422, "body_too_deep")
    strings = b'{"email": "' + b"[" * 10_000 + b'", "password": "x"}'  # brackets in a string are text
    r = await client.post(register_url, content=strings, headers={"content-type": "application/json"})
    assert r.json().get("code") != "body_too_deep", r.text

    # Unchanged by the refused requests; ordinary text (accents, tabs, newlines) still passes.
    me = (await client.get("/api/v1/auth/me", headers=bearer(tokens))).json()
    assert me["first_name"] is None
    r = await client.patch("/api/v1/auth/me", json={"first_name": "Zoë\tA.\nB"}, headers=bearer(tokens))
    assert r.status_code == 200 and r.json()["first_name"] == "Zoë\tA.\nB"


async def test_database_down_is_503_with_retry_after(
    client: httpx.AsyncClient, app_client: AppClient, api_settings: Settings
) -> None:
    email = await register(client)
    tokens = await login(client, email)
    dead = api_settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/broker_test"}
    )
    async with app_client(app=build_app(dead)) as down:
        for r in (
            await down.get("/api/v1/accounts/balances", headers=bearer(tokens)),
            await down.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}),
            await down.post("/api/v1/auth/register", json={"email": unique_email(), "password": PASSWORD}),
        ):
            assert_problem(r, 503, "database_unavailable")
            assert int(r.headers["retry-after"]) > 0
            assert "psycopg" not in r.text and "127.0.0.1" not in r.text


async def test_temporal_down_is_503_with_retry_after(app_client: AppClient, api_settings: Settings) -> None:
    dead = api_settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    async with app_client(app=build_app(dead)) as down:
        r = await down.post("/api/v1/webhooks/bank", content=b"{}")
        assert_problem(r, 503, "temporal_unavailable")
        assert int(r.headers["retry-after"]) > 0


async def test_every_503_says_when_to_retry(app_client: AppClient, api_settings: Settings) -> None:
    """A route's own 503 (a venue, the bank …) gets Retry-After too, from the one problem handler."""
    app = build_app(api_settings)

    @app.get("/test-503")
    async def down() -> None:
        raise ProblemError(503, "venue_unavailable", "no venue answered")

    async with app_client(app=app) as client:
        r = await client.get("/test-503")
        assert_problem(r, 503, "venue_unavailable")
        assert int(r.headers["retry-after"]) > 0


def test_temporal_statuses_that_mean_down() -> None:
    assert unavailable_component(RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")) == "temporal"
    assert unavailable_component(RPCError("bad request", RPCStatusCode.INVALID_ARGUMENT, b"")) is None

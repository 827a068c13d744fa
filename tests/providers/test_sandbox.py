"""The sandboxes themselves: matching semantics, the walk, custody, wire-level errors, `python -m sandbox`."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_port_run, wait_for_port
from sandbox import binance as binance_sandbox
from sandbox import kraken as kraken_sandbox
from sandbox.market import OrderStatus, Venue, VenueConfig, VenueReject
from sandbox.runner import REGISTRY, RunningSandboxes
from tests.providers.conftest import VenueControl

D = Decimal
ROOT = Path(__file__).resolve().parents[2]


def venue(**config: object) -> Venue:
    values: dict[str, object] = {"name": "t", "taker_fee": D("0.001"), "maker_fee": D("0.0008")}
    values.update(config)
    v = Venue(VenueConfig(**values), seed=1)  # type: ignore[arg-type]
    v.walk = False
    return v


def test_fok_fills_completely_or_not_at_all() -> None:
    v = venue()
    v.market("BTC-GBP").set_book([(D(67990), D(1))], [(D(68000), D("0.1")), (D(68100), D(1))], v.now_ms())
    killed = v.place(
        symbol="BTC-GBP", side="buy", type="limit", amount=D("0.5"), price=D(68050), time_in_force="FOK"
    )
    assert killed.status is OrderStatus.EXPIRED and killed.filled == 0
    filled = v.place(
        symbol="BTC-GBP", side="buy", type="limit", amount=D("0.5"), price=D(68100), time_in_force="FOK"
    )
    assert filled.status is OrderStatus.FILLED and filled.quote_filled == D("6800") + D("0.4") * 68100


def test_market_order_beyond_the_book_expires_the_rest() -> None:
    v = venue()
    v.market("ETH-GBP").set_book([(D(2599), D(1))], [(D(2600), D(2))], v.now_ms())
    o = v.place(symbol="ETH-GBP", side="buy", type="market", amount=D(3), price=None)
    assert o.status is OrderStatus.EXPIRED and o.filled == D(2)


def test_filters_and_unknown_symbol() -> None:
    v = venue()
    with pytest.raises(VenueReject) as lot:
        v.place(symbol="BTC-GBP", side="buy", type="market", amount=D("0.000001"), price=None)
    assert lot.value.kind == "filter_failure"
    with pytest.raises(VenueReject) as sym:
        v.place(symbol="DOGE-GBP", side="buy", type="market", amount=D(1), price=None)
    assert sym.value.kind == "invalid_symbol"


def test_seeded_walk_is_reproducible_in_ticks_and_builds_candles() -> None:
    a, b, c = venue(), venue(), Venue(VenueConfig("t", D(0), D(0)), seed=2)
    for _ in range(50):
        for v in (a, b, c):
            v.market("BTC-GBP").step(v.now_ms())
    mids = [v.market("BTC-GBP").mid for v in (a, b, c)]
    assert mids[0] == mids[1] != mids[2]
    assert mids[0] % D("0.01") == 0 and isinstance(mids[0], Decimal)
    [(start, o, h, lo, close, vol)] = a.market("BTC-GBP").ohlcv()[-1:]
    assert lo <= min(o, close) <= max(o, close) <= h and start % 60_000 == 0


def test_deposit_confirmations_grow_with_time() -> None:
    v = venue(confirmation_seconds=0.02, deposit_confirmations=2)
    before = v.free["ETH"]
    dep = v.credit_deposit("ETH", D("1.5"))
    assert not dep.credited and v.free["ETH"] == before
    time.sleep(0.06)
    v.tick()
    assert dep.credited and v.free["ETH"] == before + D("1.5")


async def test_binance_wire_errors(sandboxes: RunningSandboxes, http: httpx.AsyncClient) -> None:
    url = sandboxes.urls["binance"]
    control = VenueControl("binance", url, http)
    await control.reset()
    key = {"X-MBX-APIKEY": "dev-only-binance-key"}
    query = f"timestamp={int(time.time() * 1000)}"
    good = hmac.new(b"dev-only-binance-secret", query.encode(), hashlib.sha256).hexdigest()

    ok = await http.get(f"{url}/api/v3/account?{query}&signature={good}", headers=key)
    assert ok.status_code == 200 and ok.json()["accountType"] == "SPOT"
    bad = await http.get(f"{url}/api/v3/account?{query}&signature={'0' * 64}", headers=key)
    assert (bad.status_code, bad.json()["code"]) == (400, -1022)
    nokey = await http.get(f"{url}/api/v3/account?{query}&signature={good}")
    assert (nokey.status_code, nokey.json()["code"]) == (401, -2015)
    symbol = await http.get(f"{url}/api/v3/depth?symbol=DOGEGBP")
    assert (symbol.status_code, symbol.json()["code"]) == (400, -1121)

    await control.fault("rate_limit", ban_after=1, ban_seconds=0.3, count=2)
    statuses = [(await http.get(f"{url}/api/v3/ping")).status_code for _ in range(3)]
    assert statuses == [429, 418, 418]
    await asyncio.sleep(0.35)  # the ban lifts
    await control.fault("maintenance", count=1)
    down = await http.get(f"{url}/api/v3/ping")
    assert (down.status_code, down.json()["msg"]) == (503, "System is under maintenance.")


async def test_kraken_wire_errors_are_http_200(sandboxes: RunningSandboxes, http: httpx.AsyncClient) -> None:
    url = sandboxes.urls["kraken"]
    await VenueControl("kraken", url, http).reset()
    r = await http.post(f"{url}/0/private/BalanceEx", data={"nonce": "1"}, headers={"API-Key": "nobody"})
    assert (r.status_code, r.json()["error"]) == (200, ["EAPI:Invalid key"])
    r = await http.post(
        f"{url}/0/private/BalanceEx",
        data={"nonce": "1"},
        headers={"API-Key": "dev-only-kraken-key", "API-Sign": "eA=="},
    )
    assert r.json()["error"] == ["EAPI:Invalid signature"]
    r = await http.get(f"{url}/0/public/Depth?pair=DOGEGBP")
    assert r.json()["error"] == ["EQuery:Unknown asset pair"]


def test_apps_build_with_explicit_keys() -> None:
    assert binance_sandbox.create_app(api_key="k", secret="s") is not None
    assert kraken_sandbox.create_app(api_key="k", secret="c2VjcmV0") is not None


SANDBOX_OFFSETS = sorted(entry[0] for entry in REGISTRY.values())


def _wait_serving(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    """Wait for `port`, failing at once with the runner's own stderr if it exited instead."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"python -m sandbox exited {proc.returncode}: {err.decode()[-2000:]}")
        try:
            wait_for_port(port, 0.5)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


def test_python_m_sandbox_serves_every_registered_port() -> None:
    base = free_port_run(SANDBOX_OFFSETS[-1] + 1)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--base-port", str(base), "--seed", "3"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for off in SANDBOX_OFFSETS:
            _wait_serving(proc, base + off, 60)  # a loaded machine imports slowly
        info = httpx.get(f"http://127.0.0.1:{base}/api/v3/exchangeInfo").json()
        assert {s["symbol"] for s in info["symbols"]} == {"BTCGBP", "ETHGBP", "BNBGBP"}
        pairs = httpx.get(f"http://127.0.0.1:{base + 1}/0/public/AssetPairs").json()["result"]
        assert set(pairs) == {"XXBTZGBP", "XETHZGBP", "BNBGBP"}
        assert httpx.post(f"http://127.0.0.1:{base + 2}/v1/quotes", json={}).status_code == 401
        for off in (3, 4):  # bank and mail: their own app, or a placeholder until it exists
            assert httpx.get(f"http://127.0.0.1:{base + off}/").status_code in (200, 401, 403, 404, 405, 503)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err.decode()[-2000:]

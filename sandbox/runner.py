"""Start the sandbox apps: the registry of which app listens where, and an in-process starter for tests.

`REGISTRY` maps a name to (port offset from the base port, module, the setting holding the API key
the app must accept). Each module exposes `create_app(...) -> aiohttp.web.Application`; `build_app`
passes `seed=` and `api_key=` when the factory takes them (the key from the environment variable of
that setting, else its development default in `config.settings.DEV_SECRETS`). A name whose
module does not exist yet is skipped, so another engineer adds a sandbox (bank, mail) with a
one-line edit here and a module of their own.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
from dataclasses import dataclass, field

from aiohttp import web

# name -> (offset from the base port, module with create_app, API-key setting). Offsets match
# devstack's SANDBOX_OFFSETS.
REGISTRY: dict[str, tuple[int, str, str]] = {
    "binance": (0, "sandbox.binance", "binance_api_key"),
    "kraken": (1, "sandbox.kraken", "kraken_api_key"),
    "otc": (2, "sandbox.otc", "otc_api_key"),
    "bank": (3, "sandbox.bank", "bank_api_key"),
    "mail": (4, "sandbox.mail", "sendgrid_api_key"),
    "chain": (5, "sandbox.chain", ""),  # Esplora (BTC) + Ethereum JSON-RPC (ETH, BNB); no API key
    "kyc": (6, "sandbox.kyc", "kyc_app_token"),  # the KYC vendor (Sumsub's protocol)
    "twilio": (7, "sandbox.twilio", "twilio_auth_token"),  # SMS (Twilio's Messages API)
    "ops_webhook": (8, "sandbox.ops_webhook", ""),  # ops alerts (a Slack-compatible incoming webhook)
}


def available(names: list[str] | None = None) -> list[str]:
    """Registered names whose module exists, in registry order."""
    wanted = list(REGISTRY) if names is None else names
    return [n for n in wanted if n in REGISTRY and importlib.util.find_spec(REGISTRY[n][1]) is not None]


def api_key_for(name: str) -> str:
    from config.settings import DEV_SECRETS

    setting = REGISTRY[name][2]
    return os.environ.get(setting.upper()) or DEV_SECRETS[setting]


def build_app(name: str, seed: int = 0) -> web.Application:
    module = importlib.import_module(REGISTRY[name][1])
    factory = module.create_app
    params = inspect.signature(factory).parameters
    kwargs: dict[str, object] = {}
    if "seed" in params:
        kwargs["seed"] = seed
    if "api_key" in params and REGISTRY[name][2]:
        kwargs["api_key"] = api_key_for(name)
    return factory(**kwargs)


@dataclass
class RunningSandboxes:
    """Apps listening in this event loop. `urls[name]` is the base URL; `apps[name]` the app itself."""

    urls: dict[str, str] = field(default_factory=dict)
    apps: dict[str, web.Application] = field(default_factory=dict)
    runners: list[web.AppRunner] = field(default_factory=list)

    async def stop(self) -> None:
        for runner in reversed(self.runners):
            await runner.cleanup()
        self.runners.clear()


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # A short shutdown timeout: a handler deliberately hanging (timeout_after_accept) must not hold up stop().
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


async def start_venues(
    names: list[str] | None = None, *, seed: int = 0, host: str = "127.0.0.1", base_port: int | None = None
) -> RunningSandboxes:
    """Start the named sandboxes (default: all available) in the running loop.

    With `base_port` None every app gets a free ephemeral port (tests); otherwise base + offset.
    """
    running = RunningSandboxes()
    try:
        for name in available(names):
            app = build_app(name, seed)
            port = 0 if base_port is None else base_port + REGISTRY[name][0]
            runner, bound = await serve(app, host, port)
            running.runners.append(runner)
            running.apps[name] = app
            running.urls[name] = f"http://{host}:{bound}"
    except BaseException:
        await running.stop()
        raise
    return running

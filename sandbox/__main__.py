"""`python -m sandbox --base-port N [--seed S]`: every sandbox app in one process, one port each.

Ports are base + the registry offset (binance 0, kraken 1, otc 2, bank 3, mail 4). A registered app
whose module does not exist yet gets a placeholder answering 503, so `make run` (which waits for all
five ports) works before every sandbox is written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from sandbox.runner import REGISTRY, available, serve, start_venues

log = logging.getLogger("sandbox")


def placeholder_app(name: str) -> web.Application:
    async def not_yet(request: web.Request) -> web.Response:
        return web.json_response({"error": f"the {name} sandbox is not implemented yet"}, status=503)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_yet)
    return app


async def main(base_port: int, seed: int, host: str) -> None:
    running = await start_venues(seed=seed, host=host, base_port=base_port)
    for name in REGISTRY:
        if name not in available([name]):
            runner, port = await serve(placeholder_app(name), host, base_port + REGISTRY[name][0])
            running.runners.append(runner)
            running.urls[name] = f"http://{host}:{port} (placeholder)"
    for name, url in running.urls.items():
        log.info("sandbox %s on %s", name, url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--base-port", type=int, default=8100)
    parser.add_argument("--seed", type=int, default=0, help="seed of the venues' random walks")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main(args.base_port, args.seed, args.host))


if __name__ == "__main__":
    cli()

"""A process that only dispatches notifications: `python -m workers.notifications`.

The API and worker processes each run a dispatcher already (`settings.notification_dispatcher`); this
entry point is for a deployment that wants the dispatch apart, and for the tests that SIGKILL a dispatcher
in the middle of a send. It stops on SIGTERM/SIGINT after the pass in hand.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from config import get_settings
from models.database import async_engine
from providers.notification_channels import build_senders
from services.notifications.dispatcher import Dispatcher, policy_from_settings

log = logging.getLogger("workers.notifications")


async def run() -> None:
    settings = get_settings()
    engine = async_engine(settings.database_url, pool_size=4, max_overflow=4)
    dispatcher = Dispatcher(engine, build_senders(settings), policy_from_settings(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("notification dispatcher running")
    try:
        await dispatcher.run(stop)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(run())

"""Worker process: `python -m workers [--queue NAME ...]`.

Connects to Temporal and PostgreSQL, warms the venue adapters (`workers/warmup.py`), runs one Worker
per task queue (all queues by default), and on SIGTERM/SIGINT stops polling, lets running activities
finish, then exits. Run as many of these processes as you like: Temporal spreads the work and a killed
worker's tasks move on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from datetime import timedelta

import psycopg
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.worker import Worker

from config import Settings, get_settings, log_redaction
from models.database import async_engine
from providers.notification_channels import start_dispatcher
from services.connection_budget import ConnectionBudgetExceeded, check_connection_budget
from services.screening import matching as name_matching
from temporal.client import connect
from temporal.search_attributes import ensure_registered
from workers.registry import Dependencies, build
from workers.warmup import warm_venues

log = logging.getLogger("workers")


def worker_engine(settings: Settings) -> AsyncEngine:
    """The worker's pool, without a ping before each checkout: every use of it is inside an activity (or
    the notification dispatcher's loop), whose retry runs again on a fresh connection after a lost one;
    SQLAlchemy drops the whole pool when it sees a disconnect. The ping was a round trip per transaction,
    five per market order."""
    return async_engine(
        settings.database_url,
        pool_size=settings.worker_db_pool_size,
        max_overflow=settings.worker_db_max_overflow,
        pre_ping=False,
    )


async def run(queues: list[str] | None = None) -> None:
    settings = get_settings()
    client = await connect(settings)
    await ensure_registered(client, settings.temporal_namespace)
    engine = worker_engine(settings)
    await _check_connection_budget(engine, settings)
    deps = Dependencies(settings=settings, engine=engine)
    specs = build(deps)
    selected = {
        q: s for q, s in specs.items() if (not queues or q in queues) and (s.workflows or s.activities)
    }
    if settings.name_matching_warmup:  # before polling: the load holds the GIL (config/settings.py)
        await asyncio.to_thread(name_matching.warm_up)
    # Before polling: a cold adapter's first quote would miss the router's deadline (workers/warmup.py).
    await warm_venues(deps.exchange_adapters(), book_venues=deps.best_execution_router().adapters)
    workers = [
        Worker(
            client,
            task_queue=queue,
            workflows=list(spec.workflows),
            activities=list(spec.activities),
            graceful_shutdown_timeout=timedelta(seconds=10),
            max_concurrent_activities=settings.worker_max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.worker_max_concurrent_workflow_tasks,
            max_concurrent_local_activities=settings.worker_max_concurrent_local_activities,
        )
        for queue, spec in selected.items()
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker polling %s", ", ".join(selected))
    runs = [asyncio.create_task(w.run()) for w in workers]
    dispatcher = start_dispatcher(engine, settings)  # the notification outbox (SKIP LOCKED: shared)
    await stop.wait()
    log.info("worker shutting down")
    if dispatcher is not None:
        await dispatcher.stop()
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    await asyncio.gather(*runs, return_exceptions=True)
    for close in deps.closers:
        result = close()
        if asyncio.iscoroutine(result):
            await result
    await deps.engine.dispose()


async def _check_connection_budget(engine: AsyncEngine, settings: Settings) -> None:
    """Refuse to start (exit with the reason) when the configured processes' pools cannot fit the
    server's `max_connections` (services/connection_budget.py). A database that cannot be asked now
    does not stop the start: activities retry until it is back."""
    try:
        budget = await check_connection_budget(engine, settings)
    except ConnectionBudgetExceeded as e:
        await engine.dispose()
        raise SystemExit(f"worker refuses to start: {e}") from None
    except (OperationalError, InterfaceError, psycopg.OperationalError) as e:
        log.warning("connection budget not checked, the database is unavailable: %s", type(e).__name__)
        return
    log.info("connection budget: %s", budget.explain())


def main() -> None:
    parser = argparse.ArgumentParser(description="Run broker Temporal workers")
    parser.add_argument("--queue", action="append", help="task queue to serve (repeatable); default all")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log_redaction.install()
    asyncio.run(run(args.queue))


if __name__ == "__main__":
    main()

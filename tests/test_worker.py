"""A trivial workflow runs on the worker, both in-process and as the real worker process."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import sys
import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.worker import Worker

from config import Settings
from config.settings import DEV_SECRETS
from providers.email import SENDGRID_HOST, EmailSender
from temporal import task_queues
from workers.main import worker_engine
from workers.registry import Dependencies, build
from workflows.ping import PingWorkflow


async def test_ping_workflow_runs_on_registered_worker(
    temporal_client: Client, engine: AsyncEngine, settings: Settings, task_queue: str
) -> None:
    spec = build(Dependencies(settings=settings, engine=engine))[task_queues.ORDERS]
    async with Worker(
        temporal_client, task_queue=task_queue, workflows=spec.workflows, activities=spec.activities
    ):
        result = await temporal_client.execute_workflow(
            PingWorkflow.run, "hello", id=f"ping-{uuid.uuid4()}", task_queue=task_queue
        )
    assert result.echoed == "hello"
    assert result.database_ok is True


async def test_the_worker_pool_recovers_from_a_lost_connection_by_retrying_the_activity(
    temporal_client: Client, engine: AsyncEngine, settings: Settings, task_queue: str
) -> None:
    """The worker's pool does not ping before a checkout: a connection the server dropped fails one
    attempt, SQLAlchemy drops the pool, and the activity's retry succeeds on a new connection."""
    pool = worker_engine(settings.model_copy(update={"worker_db_pool_size": 1, "worker_db_max_overflow": 0}))
    try:
        async with pool.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as admin:  # the server drops it, as a restart or failover would
            assert (await admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar_one()
        spec = build(Dependencies(settings=settings, engine=pool))[task_queues.ORDERS]
        async with Worker(
            temporal_client, task_queue=task_queue, workflows=spec.workflows, activities=spec.activities
        ):
            handle = await temporal_client.start_workflow(
                PingWorkflow.run, "after-a-drop", id=f"ping-{uuid.uuid4()}", task_queue=task_queue
            )
            result = await asyncio.wait_for(handle.result(), timeout=60)
        assert result.database_ok is True
        attempts = [
            e.activity_task_started_event_attributes.attempt
            for e in (await handle.fetch_history()).events
            if e.HasField("activity_task_started_event_attributes")
        ]
        assert attempts == [2]  # the first attempt met the dropped connection; the retry did not
    finally:
        await pool.dispose()


async def test_worker_process_serves_and_stops_gracefully_on_sigterm(
    temporal_client: Client, database_url: str, temporal_address: str
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal_address}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "workers", env=env)
    try:
        result = await asyncio.wait_for(
            temporal_client.execute_workflow(
                PingWorkflow.run, "from-process", id=f"ping-{uuid.uuid4()}", task_queue=task_queues.ORDERS
            ),
            timeout=60,
        )
        assert result.echoed == "from-process"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), timeout=30)
    assert code == 0


def _strong_secret(name: str) -> str:
    """A production-grade value for each secret setting (Kraken's and the Fernet keys are base64)."""
    if name == "kraken_secret":
        return base64.b64encode(secrets.token_bytes(32)).decode()
    if name.endswith("encryption_keys"):
        return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return secrets.token_urlsafe(32)


def test_production_wiring_sends_customer_email_through_sendgrid(engine: AsyncEngine) -> None:
    """An empty SENDGRID_HOST is SendGrid itself in production: fill, deposit and withdrawal mails go out."""
    production = Settings.model_validate(
        {
            "environment": "production",
            "database_url": "postgresql://broker@db.internal:5432/broker",
            "temporal_address": "temporal.internal:7233",
            "public_base_url": "https://broker.example",
            "staff_ip_allowlist": "10.20.0.0/16",
            **{name: _strong_secret(name) for name in DEV_SECRETS},
        }
    )
    assert production.sendgrid_host == ""
    specs = build(Dependencies(settings=production, engine=engine))
    senders = [
        getattr(activity, "__self__", None)._email  # type: ignore[union-attr]
        for spec in specs.values()
        for activity in spec.activities
        if getattr(activity, "__name__", "") in {"notify", "notify_deposit", "notify_withdrawal"}
    ]
    assert len(senders) == 4  # orders, deposits, withdrawals, KYC
    for sender in senders:
        assert isinstance(sender, EmailSender)
        assert sender._client.host == SENDGRID_HOST

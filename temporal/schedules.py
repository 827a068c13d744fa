"""The Temporal schedules the stack runs on a timer, and the one call that creates them.

Client-side code (it talks to the Temporal service), so it lives here rather than in `workflows/`,
whose modules hold only deterministic workflow code. Each schedule starts one workflow run at a
fixed interval; a run still going when the next is due is skipped (overlap: skip), never doubled.

- `ops-float-monitor`: `FloatMonitorWorkflow` (omnibus floats against their thresholds);
- `payments-crypto-deposit-poll`: `CryptoDepositPollWorkflow` (deposits seen at the venue);
- `ops-hold-audit`: `HoldAuditWorkflow` (holds that outlived their order or withdrawal);
- `ops-reconciliation`: `ReconciliationWorkflow`, also kept in step with the settings (interval,
  catch-up window) on every start;
- `ops-sanctions-refresh`: `SanctionsRefreshWorkflow` (download the lists, load, re-screen everyone),
  run once at creation so a new stack screens against today's lists.

`ensure_schedules` is safe to call on every start: it creates what is missing and returns those ids.
`ensure_payment_schedules` runs it in the background of the API's lifespan: Temporal may come up after
the API, so it retries for about a minute.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from config import Settings
from models.holds import HoldAuditInput
from models.payments import CryptoPollInput, FloatCheckInput
from models.reconciliation import ReconcileInput
from models.screening_jobs import RefreshInput
from temporal import task_queues
from workflows.deposits import CryptoDepositPollWorkflow
from workflows.float_monitor import FloatMonitorWorkflow
from workflows.hold_audit import HoldAuditWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.screening import SanctionsRefreshWorkflow

log = logging.getLogger("temporal.schedules")

FLOAT_SCHEDULE_ID = "ops-float-monitor"
CRYPTO_DEPOSIT_SCHEDULE_ID = "payments-crypto-deposit-poll"
HOLD_AUDIT_SCHEDULE_ID = "ops-hold-audit"
RECONCILIATION_SCHEDULE_ID = "ops-reconciliation"
SANCTIONS_SCHEDULE_ID = "ops-sanctions-refresh"


def _every(run: Any, arg: Any, schedule_id: str, queue: str, every: timedelta) -> Schedule:
    """Start `run(arg)` every `every` on `queue`, as `<schedule id>-run`; skip a run while one is going."""
    return Schedule(
        action=ScheduleActionStartWorkflow(run, arg, id=f"{schedule_id}-run", task_queue=queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def payments_schedules(settings: Settings) -> dict[str, Schedule]:
    """The float monitor, the crypto deposit poll and the hold audit, as `settings` configure them."""
    return {
        FLOAT_SCHEDULE_ID: _every(
            FloatMonitorWorkflow.run,
            FloatCheckInput(
                thresholds=settings.float_thresholds,
                targets=settings.float_targets,
                providers=[settings.crypto_provider],
            ),
            FLOAT_SCHEDULE_ID,
            task_queues.OPS,
            timedelta(minutes=settings.float_check_minutes),
        ),
        CRYPTO_DEPOSIT_SCHEDULE_ID: _every(
            CryptoDepositPollWorkflow.run,
            CryptoPollInput(
                providers=[settings.crypto_deposit_provider],
                min_confirmations=settings.crypto_deposit_confirmations,
            ),
            CRYPTO_DEPOSIT_SCHEDULE_ID,
            task_queues.PAYMENTS,
            timedelta(seconds=settings.crypto_deposit_poll_seconds),
        ),
        HOLD_AUDIT_SCHEDULE_ID: _every(
            HoldAuditWorkflow.run,
            HoldAuditInput(),
            HOLD_AUDIT_SCHEDULE_ID,
            task_queues.OPS,
            timedelta(minutes=settings.hold_audit_minutes),
        ),
    }


def reconciliation_schedule(settings: Settings) -> Schedule:
    """Every `reconciliation_interval_minutes`; missed runs caught up within the catch-up window."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconciliationWorkflow.run,
            ReconcileInput(trigger="schedule"),
            id=f"{RECONCILIATION_SCHEDULE_ID}-run",
            task_queue=task_queues.OPS,
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(minutes=settings.reconciliation_interval_minutes))
            ]
        ),
        policy=SchedulePolicy(
            overlap=ScheduleOverlapPolicy.SKIP,
            catchup_window=timedelta(minutes=settings.reconciliation_catchup_minutes),
        ),
    )


async def ensure_reconciliation_schedule(client: Client, settings: Settings) -> bool:
    """Create the schedule, or update it to the current settings (interval, catch-up). True if created."""
    schedule = reconciliation_schedule(settings)
    try:
        await client.create_schedule(RECONCILIATION_SCHEDULE_ID, schedule)
        return True
    except ScheduleAlreadyRunningError:

        def update(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(RECONCILIATION_SCHEDULE_ID).update(update)
        return False


async def ensure_screening_schedule(client: Client, settings: Settings) -> bool:
    """Create the daily sanctions refresh schedule if missing; True when it was created now."""
    try:
        await client.create_schedule(
            SANCTIONS_SCHEDULE_ID,
            _every(
                SanctionsRefreshWorkflow.run,
                RefreshInput(),
                SANCTIONS_SCHEDULE_ID,
                task_queues.OPS,
                timedelta(hours=settings.sanctions_refresh_hours),
            ),
            # A new stack screens against today's lists, not tomorrow's. Not under tests: their workers
            # serve the real queue names, and a run would load the full lists into their database.
            trigger_immediately=settings.environment != "test",
        )
        return True
    except ScheduleAlreadyRunningError:
        return False


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create every schedule that does not exist yet (and refresh the reconciliation's); the ids created."""
    created = []
    for schedule_id, schedule in payments_schedules(settings).items():
        try:
            await client.create_schedule(schedule_id, schedule)
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            pass
    if await ensure_reconciliation_schedule(client, settings):
        created.append(RECONCILIATION_SCHEDULE_ID)
    if await ensure_screening_schedule(client, settings):
        created.append(SANCTIONS_SCHEDULE_ID)
    return created


async def ensure_payment_schedules(
    connect: Callable[[], Awaitable[Client]], settings: Settings, *, attempts: int = 30, pause_s: float = 2.0
) -> None:
    """`ensure_schedules` once Temporal is reachable (the API's start-up; `make run` also runs it)."""
    if settings.environment == "test":
        return  # tests run their own workers on their own queues; nothing should poll on a timer
    for _ in range(attempts):
        try:
            await ensure_schedules(await connect(), settings)
            return
        except Exception as e:  # Temporal not up yet: try again shortly
            log.info("schedules not created yet: %s", type(e).__name__)
            await asyncio.sleep(pause_s)

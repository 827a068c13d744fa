"""The Temporal schedules the stack runs on a timer, and the one call that creates or updates them.

Client-side code (it talks to the Temporal service), so it lives here rather than in `workflows/`,
whose modules hold only deterministic workflow code. Each schedule starts one workflow run at a
fixed interval; a run still going when the next is due is skipped (overlap: skip), never doubled.

- `ops-float-monitor`: `FloatMonitorWorkflow` (omnibus floats against their thresholds);
- `payments-crypto-deposit-poll`: `CryptoDepositPollWorkflow` (deposits seen at the venue);
- `ops-hold-audit`: `HoldAuditWorkflow` (holds that outlived their order or withdrawal);
- `ops-reconciliation`: `ReconciliationWorkflow`;
- `ops-sanctions-refresh`: `SanctionsRefreshWorkflow` (download the lists, load, re-screen everyone),
  run once at creation so a new stack screens against today's lists;
- `ops-aml-sweep`: `AmlSweepWorkflow` (the AML window rules over every customer);
- `ops-price-alerts`: `PriceAlertsWorkflow` (customers' price alerts against the venues' best prices).

`ensure_schedules` is safe to call on every start: through `ensure_schedule` it creates what is
missing (returning those ids) and updates the others to the current settings, without an extra run.
`ensure_payment_schedules` runs it in the background of the API's lifespan: Temporal may come up after
the API, so it retries for about a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleAction,
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
from models.aml import SweepInput
from models.holds import HoldAuditInput
from models.payments import CryptoPollInput, FloatCheckInput
from models.price_alerts import PriceAlertCheckInput
from models.reconciliation import ReconcileInput
from models.screening_jobs import RefreshInput
from temporal import task_queues
from workflows.aml import AmlSweepWorkflow
from workflows.deposits import CryptoDepositPollWorkflow
from workflows.float_monitor import FloatMonitorWorkflow
from workflows.hold_audit import HoldAuditWorkflow
from workflows.price_alerts import PriceAlertsWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.screening import SanctionsRefreshWorkflow

log = logging.getLogger("temporal.schedules")

FLOAT_SCHEDULE_ID = "ops-float-monitor"
CRYPTO_DEPOSIT_SCHEDULE_ID = "payments-crypto-deposit-poll"
HOLD_AUDIT_SCHEDULE_ID = "ops-hold-audit"
RECONCILIATION_SCHEDULE_ID = "ops-reconciliation"
SANCTIONS_SCHEDULE_ID = "ops-sanctions-refresh"
AML_SWEEP_SCHEDULE_ID = "ops-aml-sweep"
PRICE_ALERTS_SCHEDULE_ID = "ops-price-alerts"


# Temporal's own default catch-up window, written out so that a schedule read back from the server
# compares equal to the one wanted (the server fills in a window left unset). With overlap: skip it
# means: after an outage, one run makes up for the missed ones.
_DEFAULT_CATCHUP = timedelta(days=365)


def _every(run: Any, arg: Any, schedule_id: str, queue: str, every: timedelta) -> Schedule:
    """Start `run(arg)` every `every` on `queue`, as `<schedule id>-run`; skip a run while one is going."""
    return Schedule(
        action=ScheduleActionStartWorkflow(run, arg, id=f"{schedule_id}-run", task_queue=queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=_DEFAULT_CATCHUP),
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


def sanctions_schedule(settings: Settings) -> Schedule:
    """Download the lists, load them and re-screen everyone every `sanctions_refresh_hours`."""
    return _every(
        SanctionsRefreshWorkflow.run,
        RefreshInput(),
        SANCTIONS_SCHEDULE_ID,
        task_queues.OPS,
        timedelta(hours=settings.sanctions_refresh_hours),
    )


def aml_sweep_schedule(settings: Settings) -> Schedule:
    """The AML window rules over every customer every `aml_sweep_minutes` (at the run's start time)."""
    return _every(
        AmlSweepWorkflow.run,
        SweepInput(),
        AML_SWEEP_SCHEDULE_ID,
        task_queues.OPS,
        timedelta(minutes=settings.aml_sweep_minutes),
    )


def price_alerts_schedule(settings: Settings) -> Schedule:
    """Check every active price alert every `price_alert_check_seconds` (workflows/price_alerts.py)."""
    return _every(
        PriceAlertsWorkflow.run,
        PriceAlertCheckInput(
            band=settings.price_alert_band, cooldown_seconds=settings.price_alert_cooldown_seconds
        ),
        PRICE_ALERTS_SCHEDULE_ID,
        task_queues.OPS,
        timedelta(seconds=settings.price_alert_check_seconds),
    )


def all_schedules(settings: Settings) -> dict[str, Schedule]:
    """Every schedule the stack runs, by id, as `settings` configure them."""
    return {
        **payments_schedules(settings),
        RECONCILIATION_SCHEDULE_ID: reconciliation_schedule(settings),
        SANCTIONS_SCHEDULE_ID: sanctions_schedule(settings),
        AML_SWEEP_SCHEDULE_ID: aml_sweep_schedule(settings),
        PRICE_ALERTS_SCHEDULE_ID: price_alerts_schedule(settings),
    }


async def _action_key(client: Client, action: ScheduleAction) -> tuple[Any, ...]:
    """What a start-workflow action does, comparable between one built here and one read back.

    The arguments are compared as the client's converter encodes them (a read-back action holds
    them encoded); anything else, or a codec that does not encode twice alike, just compares unequal,
    which costs one harmless update.
    """
    if not isinstance(action, ScheduleActionStartWorkflow):
        return (type(action).__name__,)
    args = list(action.args)
    encoded = args if args and isinstance(args[0], Payload) else await client.data_converter.encode(args)
    return (
        action.workflow,
        action.id,
        action.task_queue,
        action.execution_timeout,
        action.run_timeout,
        action.task_timeout,
        action.retry_policy,
        [p.SerializeToString(deterministic=True) for p in encoded],
    )


async def ensure_schedule(
    client: Client, schedule_id: str, schedule: Schedule, *, trigger_immediately: bool = False
) -> bool:
    """Create `schedule_id` as `schedule`, or bring an existing one to it; True when created now.

    Safe on every start of every process: the settings in force win over those the schedule was
    first created with (interval, arguments, policy). An update never starts a run of its own
    (`trigger_immediately` applies at creation only), leaves the schedule's state as it is (a pause
    and its note set by an operator survive a restart), and is skipped when nothing differs, so a
    restart with the same settings changes nothing.
    """
    try:
        await client.create_schedule(schedule_id, schedule, trigger_immediately=trigger_immediately)
        return True
    except ScheduleAlreadyRunningError:
        pass
    wanted_action = await _action_key(client, schedule.action)

    async def update(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        now = current.description.schedule
        if (
            now.spec == schedule.spec
            and now.policy == schedule.policy
            and await _action_key(client, now.action) == wanted_action
        ):
            return None
        log.info("schedule %s updated to the current settings", schedule_id)
        return ScheduleUpdate(schedule=dataclasses.replace(schedule, state=now.state))

    await client.get_schedule_handle(schedule_id).update(update)
    return False


async def ensure_reconciliation_schedule(client: Client, settings: Settings) -> bool:
    """Create the reconciliation schedule, or update it to the current settings. True if created."""
    return await ensure_schedule(client, RECONCILIATION_SCHEDULE_ID, reconciliation_schedule(settings))


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create every schedule that is missing and update the others to `settings`; the ids created."""
    created = []
    for schedule_id, schedule in all_schedules(settings).items():
        # A new stack screens against today's lists, not tomorrow's. Not under tests: their workers
        # serve the real queue names, and a run would load the full lists into their database.
        run_now = schedule_id == SANCTIONS_SCHEDULE_ID and settings.environment != "test"
        if await ensure_schedule(client, schedule_id, schedule, trigger_immediately=run_now):
            created.append(schedule_id)
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

"""The schedules the stack's start-up creates (the API's lifespan calls `ensure_schedules` once Temporal
answers, as `make run` does): the reconciliation every 15 minutes is among them, and a later start
brings every schedule to the settings then in force."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
)

from config import Settings
from models.payments import CryptoPollInput, FloatCheckInput
from temporal.schedules import (
    AML_SWEEP_SCHEDULE_ID,
    CRYPTO_DEPOSIT_SCHEDULE_ID,
    FLOAT_SCHEDULE_ID,
    HOLD_AUDIT_SCHEDULE_ID,
    PRICE_ALERTS_SCHEDULE_ID,
    RECONCILIATION_SCHEDULE_ID,
    SANCTIONS_SCHEDULE_ID,
    ensure_schedule,
    ensure_schedules,
    sanctions_schedule,
)

ALL_IDS = {
    RECONCILIATION_SCHEDULE_ID,
    FLOAT_SCHEDULE_ID,
    CRYPTO_DEPOSIT_SCHEDULE_ID,
    HOLD_AUDIT_SCHEDULE_ID,
    SANCTIONS_SCHEDULE_ID,
    AML_SWEEP_SCHEDULE_ID,
    PRICE_ALERTS_SCHEDULE_ID,
}


async def _delete_all(client: Client) -> None:
    for schedule_id in ALL_IDS:
        await client.get_schedule_handle(schedule_id).delete()


async def _describe_all(client: Client) -> dict[str, ScheduleDescription]:
    return {i: await client.get_schedule_handle(i).describe() for i in ALL_IDS}


def _every(desc: ScheduleDescription) -> timedelta:
    return desc.schedule.spec.intervals[0].every


async def _until(check: Callable[[], Awaitable[bool]], within_s: float = 20) -> None:
    """Wait on the server's state (a generous bound only so a broken build fails instead of hanging)."""
    async with asyncio.timeout(within_s):
        while not await check():
            await asyncio.sleep(0.05)


async def test_start_up_creates_the_reconciliation_schedule_with_the_others(
    temporal_client: Client, settings: Settings
) -> None:
    created = await ensure_schedules(temporal_client, settings)
    try:
        assert set(created) == ALL_IDS
        desc = await temporal_client.get_schedule_handle(RECONCILIATION_SCHEDULE_ID).describe()
        assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert (
            desc.schedule.spec.intervals[0].every.total_seconds()
            == 60 * settings.reconciliation_interval_minutes
        )
        assert await ensure_schedules(temporal_client, settings) == []  # a restart creates nothing twice
    finally:
        await _delete_all(temporal_client)


async def test_a_restart_brings_every_schedule_to_the_changed_settings(
    temporal_client: Client, settings: Settings
) -> None:
    # Intervals of hours, so no run falls due while the test looks at the run counts.
    first = settings.model_copy(
        update={
            "float_check_minutes": 600,
            "crypto_deposit_poll_seconds": 7200,
            "crypto_deposit_confirmations": 2,
            "hold_audit_minutes": 600,
            "reconciliation_interval_minutes": 600,
            "reconciliation_catchup_minutes": 60,
            "sanctions_refresh_hours": 48,
            "aml_sweep_minutes": 600,
            "price_alert_check_seconds": 30,
        }
    )
    changed = first.model_copy(
        update={
            "float_check_minutes": 720,
            "float_thresholds": {**first.float_thresholds, "BTC": Decimal("7")},
            "crypto_deposit_poll_seconds": 3600,
            "crypto_deposit_confirmations": 6,
            "hold_audit_minutes": 900,
            "reconciliation_interval_minutes": 480,
            "reconciliation_catchup_minutes": 30,
            "sanctions_refresh_hours": 72,
            "aml_sweep_minutes": 720,
            "price_alert_check_seconds": 90,
        }
    )
    assert set(await ensure_schedules(temporal_client, first)) == ALL_IDS
    try:
        # An operator paused the float monitor: a restart must not resume it.
        await temporal_client.get_schedule_handle(FLOAT_SCHEDULE_ID).pause(note="ops: venue migration")

        assert await ensure_schedules(temporal_client, changed) == []

        after = await _describe_all(temporal_client)
        assert _every(after[FLOAT_SCHEDULE_ID]) == timedelta(minutes=720)
        assert _every(after[CRYPTO_DEPOSIT_SCHEDULE_ID]) == timedelta(seconds=3600)
        assert _every(after[HOLD_AUDIT_SCHEDULE_ID]) == timedelta(minutes=900)
        assert _every(after[RECONCILIATION_SCHEDULE_ID]) == timedelta(minutes=480)
        assert after[RECONCILIATION_SCHEDULE_ID].schedule.policy.catchup_window == timedelta(minutes=30)
        assert _every(after[SANCTIONS_SCHEDULE_ID]) == timedelta(hours=72)
        assert _every(after[AML_SWEEP_SCHEDULE_ID]) == timedelta(minutes=720)
        assert _every(after[PRICE_ALERTS_SCHEDULE_ID]) == timedelta(seconds=90)
        for desc in after.values():
            assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
            assert desc.info.last_updated_at is not None  # each was updated in place...
            assert desc.info.num_actions == 0  # ...and no update started a run

        float_action = after[FLOAT_SCHEDULE_ID].schedule.action
        poll_action = after[CRYPTO_DEPOSIT_SCHEDULE_ID].schedule.action
        assert isinstance(float_action, ScheduleActionStartWorkflow)
        assert isinstance(poll_action, ScheduleActionStartWorkflow)
        (float_input,) = await temporal_client.data_converter.decode(float_action.args, [FloatCheckInput])
        (poll_input,) = await temporal_client.data_converter.decode(poll_action.args, [CryptoPollInput])
        assert float_input.thresholds["BTC"] == Decimal("7")
        assert poll_input.min_confirmations == 6
        assert after[FLOAT_SCHEDULE_ID].schedule.state.paused
        assert after[FLOAT_SCHEDULE_ID].schedule.state.note == "ops: venue migration"

        # The same settings again: nothing is written, nothing visible changes.
        assert await ensure_schedules(temporal_client, changed) == []
        again = await _describe_all(temporal_client)
        for schedule_id, desc in again.items():
            assert desc.schedule == after[schedule_id].schedule, schedule_id
            assert desc.info.last_updated_at == after[schedule_id].info.last_updated_at, schedule_id
            assert desc.info.num_actions == 0
    finally:
        await _delete_all(temporal_client)


async def test_the_run_at_creation_is_not_repeated_by_an_update(
    temporal_client: Client, settings: Settings, task_queue: str
) -> None:
    """The sanctions refresh runs once when created (outside tests); updating it must not run it again.

    On a queue no worker serves, so the run it starts only waits there until the test ends it.
    """
    schedule_id = f"{SANCTIONS_SCHEDULE_ID}-{task_queue}"

    def refresh(hours: float) -> Schedule:
        schedule = sanctions_schedule(settings.model_copy(update={"sanctions_refresh_hours": hours}))
        action = schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        action.task_queue = task_queue
        return schedule

    handle = temporal_client.get_schedule_handle(schedule_id)
    assert await ensure_schedule(temporal_client, schedule_id, refresh(48), trigger_immediately=True)
    try:

        async def ran_once() -> bool:
            return (await handle.describe()).info.num_actions == 1

        await _until(ran_once)
        updated = await ensure_schedule(temporal_client, schedule_id, refresh(72), trigger_immediately=True)
        desc = await handle.describe()
        assert updated is False
        assert desc.schedule.spec.intervals == [ScheduleIntervalSpec(every=timedelta(hours=72))]
        assert desc.info.num_actions == 1
        assert len(desc.info.running_actions) == 1
    finally:
        desc = await handle.describe()
        await handle.delete()
        for run in desc.info.running_actions:
            assert isinstance(run, ScheduleActionExecutionStartWorkflow)
            await temporal_client.get_workflow_handle(run.workflow_id).terminate("test over")

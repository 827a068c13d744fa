"""The schedules the stack's start-up creates (the API's lifespan calls `ensure_schedules` once Temporal
answers, as `make run` does): the reconciliation every 15 minutes is among them."""

from __future__ import annotations

from temporalio.client import Client, ScheduleOverlapPolicy

from config import Settings
from temporal.schedules import RECONCILIATION_SCHEDULE_ID, SANCTIONS_SCHEDULE_ID, ensure_schedules


async def test_start_up_creates_the_reconciliation_schedule_with_the_others(
    temporal_client: Client, settings: Settings
) -> None:
    wanted = {
        RECONCILIATION_SCHEDULE_ID,
        "ops-float-monitor",
        "payments-crypto-deposit-poll",
        "ops-hold-audit",
        SANCTIONS_SCHEDULE_ID,
    }
    created = await ensure_schedules(temporal_client, settings)
    try:
        assert set(created) == wanted
        desc = await temporal_client.get_schedule_handle(RECONCILIATION_SCHEDULE_ID).describe()
        assert desc.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert (
            desc.schedule.spec.intervals[0].every.total_seconds()
            == 60 * settings.reconciliation_interval_minutes
        )
        assert await ensure_schedules(temporal_client, settings) == []  # a restart creates nothing twice
    finally:
        for schedule_id in wanted:
            await temporal_client.get_schedule_handle(schedule_id).delete()

"""Hot-wallet float monitor (seed §5) and the schedules of the payments sagas.

`FloatMonitorWorkflow` runs one check; the Temporal schedule `ops-float-monitor` starts it every few
minutes, `payments-crypto-deposit-poll` starts the crypto deposit poller, and `ops-hold-audit` the
hold audit (workflows/hold_audit.py). `ensure_schedules` creates them if missing and is safe to call
on every start.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.client import (
        Client,
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
    )

    from activities.payments import PaymentActivities
    from activities.treasury import TreasuryActivities
    from config import Settings
    from models.holds import HoldAuditInput
    from models.payments import CryptoPollInput, FloatCheckInput, FloatCheckResult
    from models.treasury import TopUpPlanInput
    from temporal import task_queues
    from workflows.deposits import CryptoDepositPollWorkflow
    from workflows.hold_audit import HOLD_AUDIT_SCHEDULE_ID, HoldAuditWorkflow
    from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id

FLOAT_SCHEDULE_ID = "ops-float-monitor"
CRYPTO_DEPOSIT_SCHEDULE_ID = "payments-crypto-deposit-poll"


@workflow.defn
class FloatMonitorWorkflow:
    """Checks each omnibus balance against its threshold; below it, alerts ops, records one top-up
    request to the target (the request stays open, and is not repeated, until the balance recovers) and
    starts a float transfer from a venue with surplus (one open transfer per currency at a time)."""

    @workflow.run
    async def run(self, data: FloatCheckInput) -> FloatCheckResult:
        result = await workflow.execute_activity_method(
            PaymentActivities.check_float,
            data,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
        )
        if result.below and workflow.patched("float-top-up-transfers"):
            await self._top_up(data)
        return result

    async def _top_up(self, data: FloatCheckInput) -> None:
        """Start a float transfer for each short float a venue with surplus can cover (workflows/
        treasury.py); the transfer outlives this check and, above the limit, waits for two staff."""
        plan = await workflow.execute_activity_method(
            TreasuryActivities.plan_top_ups,
            TopUpPlanInput(thresholds=data.thresholds, targets=data.targets, providers=data.providers),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
        )
        for transfer in plan.transfers:
            try:
                await workflow.start_child_workflow(
                    FloatTransferWorkflow.run,
                    transfer,
                    id=float_transfer_workflow_id(transfer.transfer_id),
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                pass  # this check's retry: the transfer is already under way
            workflow.logger.warning(
                "float top-up: %s %s from %s to %s (transfer %s)", transfer.amount, transfer.currency,
                transfer.from_venue, transfer.to_venue, transfer.transfer_id,
            )  # fmt: skip


async def ensure_schedules(client: Client, settings: Settings) -> list[str]:
    """Create the payments schedules if they don't exist yet; returns the ids created."""
    wanted: dict[str, tuple[object, object, str, timedelta]] = {
        FLOAT_SCHEDULE_ID: (
            FloatMonitorWorkflow.run,
            FloatCheckInput(
                thresholds=settings.float_thresholds,
                targets=settings.float_targets,
                providers=[settings.crypto_provider],
            ),
            task_queues.OPS,
            timedelta(minutes=settings.float_check_minutes),
        ),
        CRYPTO_DEPOSIT_SCHEDULE_ID: (
            CryptoDepositPollWorkflow.run,
            CryptoPollInput(
                providers=[settings.crypto_deposit_provider],
                min_confirmations=settings.crypto_deposit_confirmations,
            ),
            task_queues.PAYMENTS,
            timedelta(seconds=settings.crypto_deposit_poll_seconds),
        ),
        HOLD_AUDIT_SCHEDULE_ID: (
            HoldAuditWorkflow.run,
            HoldAuditInput(),
            task_queues.OPS,
            timedelta(minutes=settings.hold_audit_minutes),
        ),
    }
    created = []
    for schedule_id, (run, arg, queue, every) in wanted.items():
        try:
            await client.create_schedule(
                schedule_id,
                Schedule(
                    action=ScheduleActionStartWorkflow(
                        run,  # type: ignore[arg-type]
                        arg,
                        id=f"{schedule_id}-run",
                        task_queue=queue,
                    ),
                    spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                    policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                ),
            )
            created.append(schedule_id)
        except ScheduleAlreadyRunningError:
            pass
    from workflows.reconciliation import SCHEDULE_ID, ensure_reconciliation_schedule

    if await ensure_reconciliation_schedule(client, settings):
        created.append(SCHEDULE_ID)
    from workflows.screening import SCHEDULE_ID as SCREENING_SCHEDULE_ID
    from workflows.screening import ensure_screening_schedule

    if await ensure_screening_schedule(client, settings):
        created.append(SCREENING_SCHEDULE_ID)
    return created

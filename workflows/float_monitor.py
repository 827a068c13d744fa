"""Hot-wallet float monitor (docs/architecture.md §5).

`FloatMonitorWorkflow` runs one check; the Temporal schedule `ops-float-monitor` starts it every few
minutes (temporal/schedules.py).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.payments import PaymentActivities
    from activities.treasury import TreasuryActivities
    from models.payments import FloatCheckInput, FloatCheckResult
    from models.treasury import TopUpPlanInput
    from workflows.treasury import FloatTransferWorkflow, float_transfer_workflow_id


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

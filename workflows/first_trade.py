"""The 24-hour cooling-off before a first trade (FCA PS23/6), as a durable timer.

`CoolingOffWorkflow` (`cooling-off-<user id>`, one per customer: Temporal refuses a second start) is
started when the customer acknowledges the risk warning. It sleeps for the period on Temporal's clock,
which survives worker and server restarts, then opens the gate. Nothing polls a clock: until the timer
fires, `first_trade_gates.enforce` refuses the first trade with `gate_cooling_off`.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from activities.first_trade import FirstTradeActivities
    from models.first_trade_gates import CoolingOffInput, CoolingOffResult


def cooling_off_workflow_id(user_id: uuid.UUID) -> str:
    return f"cooling-off-{user_id}"


@workflow.defn
class CoolingOffWorkflow:
    """Waits out the cooling-off period, then opens the customer's cooling-off gate exactly once (the
    activity is idempotent and retried until the database answers)."""

    @workflow.run
    async def run(self, data: CoolingOffInput) -> CoolingOffResult:
        if data.seconds > 0:
            await workflow.sleep(timedelta(seconds=data.seconds))
        return await workflow.execute_activity_method(
            FirstTradeActivities.complete_cooling_off,
            data,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1)
            ),
        )


async def start_cooling_off(client: Client, data: CoolingOffInput, task_queue: str) -> None:
    """Start the customer's cooling-off saga; one already running (or finished) for them is left as it is."""
    try:
        await client.start_workflow(
            CoolingOffWorkflow.run,
            data,
            id=cooling_off_workflow_id(data.user_id),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError:
        pass

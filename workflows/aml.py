"""The scheduled AML sweep: `AmlSweepWorkflow`, started by the `ops-aml-sweep` Temporal schedule.

One run applies the window rules of every published rule set version to every customer active in the
windows (services/aml/sweep.py) and records alerts; idempotent per customer, rule and day, so a retried
or repeated run raises nothing twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.aml import AmlActivities
    from models.aml import SweepInput, SweepResult


@workflow.defn
class AmlSweepWorkflow:
    """Runs one sweep to the end (retried until it completes); nothing else."""

    @workflow.run
    async def run(self, data: SweepInput) -> SweepResult:
        at = data.at or workflow.now()
        return await workflow.execute_activity_method(
            AmlActivities.sweep,
            SweepInput(at=at),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=10),
        )

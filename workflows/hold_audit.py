"""The periodic hold audit: the Temporal schedule `ops-hold-audit` runs it every few minutes
(temporal/schedules.py).

A hold must never outlive its order or withdrawal (services/holds.py says how that is kept); this
audit is the check that it held, and reports any hold that did outlive its owner (ops alert).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.holds import HoldActivities
    from models.holds import HoldAuditInput, HoldAuditResult


@workflow.defn
class HoldAuditWorkflow:
    """One audit run: lists (and alerts on) active holds whose owner is final or missing."""

    @workflow.run
    async def run(self, data: HoldAuditInput) -> HoldAuditResult:
        return await workflow.execute_activity_method(
            HoldActivities.audit,
            data,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
        )

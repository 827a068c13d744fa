"""Price alerts (docs/architecture.md §C.9): `PriceAlertsWorkflow` runs one check of every active alert; the
Temporal schedule `ops-price-alerts` starts it every `PRICE_ALERT_CHECK_SECONDS` (temporal/schedules.py).

Why a schedule of short runs rather than a workflow per alert or one eternal loop: the alert's state lives in
its row (services/price_alerts.py), so a run holds nothing worth keeping in a history; a schedule survives
worker and server restarts, never overlaps two checks (overlap: skip) and after an outage makes up with one
run; and one check covers every customer's alerts for the cost of one price read per symbol, where a workflow
per alert would multiply timers and price reads by the number of alerts.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.price_alerts import PriceAlertActivities
    from models.price_alerts import PriceAlertCheckInput, PriceAlertCheckResult


@workflow.defn
class PriceAlertsWorkflow:
    """One evaluation of every active price alert; firing writes the notification to the outbox in the
    same transaction as the alert's new state, so a firing is delivered once whatever fails."""

    @workflow.run
    async def run(self, data: PriceAlertCheckInput) -> PriceAlertCheckResult:
        return await workflow.execute_activity_method(
            PriceAlertActivities.check,
            data,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=5), maximum_attempts=3),
        )

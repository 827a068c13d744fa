"""GDPR sagas (docs/architecture.md §11): the subject-access export and the retention purge after closure.

`GdprExportWorkflow` (`gdpr-export-<request id>`) builds the customer's archive, emails a signed link to
it, keeps it for the link's lifetime (a durable timer) and then erases it. Building and erasing are retried
until they succeed (a build that cannot finish leaves the request REQUESTED, and ops see it once it is past
its one-month deadline: `GET /api/v1/admin/gdpr/exports/overdue`); the email is given up after hours of
refusals, so the zip never outlives its link.

`RetentionWorkflow` (`gdpr-retention-<user id>`, one per customer: Temporal refuses a second start) sleeps
until the closed account's retention period ends (five years, on Temporal's clock, surviving restarts),
then asks the database when the data is due (the closure's row decides: none means the closure never
committed, and it ends doing nothing) and pseudonymises it. The ledger is never touched.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from temporalio.client import Client
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from activities.gdpr import GdprActivities
    from models.gdpr import (
        ExportInput,
        ExportResult,
        ExportStatus,
        PurgeInput,
        RetentionInput,
        RetentionResult,
        export_workflow_id,
        retention_workflow_id,
    )

_TIMEOUT = timedelta(minutes=5)
_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=10))
# About six hours of tries (doubling to ten minutes apart), then the saga goes on without the email.
_EMAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=10), maximum_attempts=40
)


@workflow.defn
class GdprExportWorkflow:
    """Builds, delivers and finally deletes one export. Never gives up building it (a request stuck there
    becomes overdue for ops) or deleting it; gives up emailing after hours of refusals and still deletes
    the file on time; never emails twice on replay (the activity records the send)."""

    @workflow.run
    async def run(self, data: ExportInput) -> ExportResult:
        built = await workflow.execute_activity_method(
            GdprActivities.build_export, data, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
        )
        try:
            await workflow.execute_activity_method(
                GdprActivities.email_export_link,
                built,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=_EMAIL_RETRY,
            )
        except ActivityError:
            # The mail provider refused for hours: the file must still go when its lifetime ends (the
            # customer can ask again); the failure stays in this saga's history for ops.
            workflow.logger.warning("export %s: the link email could not be sent", data.request_id)
        if built.link_seconds > 0:
            await workflow.sleep(timedelta(seconds=built.link_seconds))
        await workflow.execute_activity_method(
            GdprActivities.expire_export,
            built,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=_RETRY,
        )
        return ExportResult(request_id=data.request_id, status=ExportStatus.EXPIRED.value)


@workflow.defn
class RetentionWorkflow:
    """Waits out the retention period of a closed account, then pseudonymises it exactly once."""

    @workflow.run
    async def run(self, data: RetentionInput) -> RetentionResult:
        due: datetime = data.purge_at
        while True:
            left = due - workflow.now()
            if left > timedelta(0):
                await workflow.sleep(left)
            ask = PurgeInput(user_id=data.user_id, as_of=workflow.now())
            check = await workflow.execute_activity_method(
                GdprActivities.retention_check,
                ask,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=_RETRY,
            )
            if check.due_at is None or check.already_pseudonymised:
                return RetentionResult(user_id=data.user_id, pseudonymised=False)
            if check.due_at > ask.as_of:
                due = check.due_at  # closed later than this saga was told: wait for the recorded date
                continue
            return await workflow.execute_activity_method(
                GdprActivities.pseudonymise, ask, start_to_close_timeout=_TIMEOUT, retry_policy=_RETRY
            )


async def _start(client: Client, run: Any, arg: Any, *, workflow_id: str, task_queue: str) -> None:
    try:
        await client.start_workflow(
            run,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
        )
    except WorkflowAlreadyStartedError:
        pass  # a repeat of the request: the saga already has it


async def start_export(client: Client, data: ExportInput, task_queue: str) -> None:
    """Start the export's saga; one already started for this request is left as it is."""
    await _start(
        client,
        GdprExportWorkflow.run,
        data,
        workflow_id=export_workflow_id(data.request_id),
        task_queue=task_queue,
    )


class TemporalRetentionSagas:
    """`services.gdpr_closure.RetentionSagas` on Temporal."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def start_retention(self, user_id: uuid.UUID, purge_at: datetime) -> None:
        await _start(
            self._client,
            RetentionWorkflow.run,
            RetentionInput(user_id=user_id, purge_at=purge_at),
            workflow_id=retention_workflow_id(user_id),
            task_queue=self._task_queue,
        )

"""The daily sanctions list refresh: download, load each list, re-screen every customer.

The Temporal schedule `ops-sanctions-refresh` (created at start-up with the other schedules) starts
`SanctionsRefreshWorkflow` every `SANCTIONS_REFRESH_HOURS` (24). Each list is loaded and followed by a
re-screen of every customer that records only changed outcomes (services/screening/service.py). A list
whose download looks truncated is refused by the store and skipped with an ops alert; the others still
load. Locally there are no URLs and the run reads the shipped files in `../shared/data/sanctions/`.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.screening import LIST_FILE_UNREADABLE, SUSPICIOUS_LIST_UPDATE, ScreeningActivities
    from models.screening import ListSource
    from models.screening_jobs import (
        DownloadInput,
        RefreshInput,
        RefreshListInput,
        RefreshListResult,
        RefreshResult,
    )

LISTS = (ListSource.OFAC_SDN, ListSource.UN_SC, ListSource.UK_FCDO)
REFUSALS = (SUSPICIOUS_LIST_UPDATE, LIST_FILE_UNREADABLE)  # a bad file: that list is skipped, not retried


@workflow.defn
class SanctionsRefreshWorkflow:
    """One refresh of every list. Guarantees: a list is replaced only by a complete file set, every
    customer is re-screened after each list that loaded, and only changed outcomes are recorded."""

    @workflow.run
    async def run(self, data: RefreshInput) -> RefreshResult:
        data_dir = data.data_dir
        if not data_dir:
            downloaded = await workflow.execute_activity_method(
                ScreeningActivities.download_lists,
                DownloadInput(key=f"{workflow.now():%Y%m%dT%H%M%S}-{workflow.info().run_id}"),
                start_to_close_timeout=timedelta(minutes=10),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5), maximum_attempts=6),
            )
            data_dir = downloaded.data_dir
        result = RefreshResult(data_dir=data_dir)
        for source in LISTS:
            try:
                done = await workflow.execute_activity_method(
                    ScreeningActivities.refresh_list,
                    RefreshListInput(source=source.value, data_dir=data_dir),
                    start_to_close_timeout=timedelta(hours=2),
                    heartbeat_timeout=timedelta(minutes=1),
                    retry_policy=RetryPolicy(
                        maximum_interval=timedelta(minutes=5),
                        non_retryable_error_types=[SUSPICIOUS_LIST_UPDATE, LIST_FILE_UNREADABLE],
                    ),
                )
            except ActivityError as e:
                cause = e.cause
                if not (isinstance(cause, ApplicationError) and cause.type in REFUSALS):
                    raise
                workflow.logger.error("OPS ALERT sanctions list %s refused: %s", source.value, cause.message)
                done = RefreshListResult(source=source.value, refused=cause.message)
            result.lists.append(done)
        return result

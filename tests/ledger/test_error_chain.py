"""A database error the ledger has no type for reaches Temporal with its own message."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from services.ledger import Ledger

NewAccount = Callable[..., Awaitable[uuid.UUID]]

# A reference type longer than its column (varchar(50)): PostgreSQL refuses it with SQLSTATE 22001,
# which stands for no ledger error, so the driver's error itself must travel.
TOO_LONG_REFERENCE = "R" * 60


class HoldActivities:
    def __init__(self, ledger: Ledger, account: uuid.UUID) -> None:
        self._ledger = ledger
        self._account = account

    @activity.defn(name="test.reserve_with_bad_reference")
    async def reserve(self) -> None:
        await self._ledger.reserve(
            self._account,
            "GBP",
            Decimal("1.00"),
            reference_type=TOO_LONG_REFERENCE,
            reference_id=uuid.uuid4(),
        )


@workflow.defn(name="test.LedgerErrorWorkflow", sandboxed=False)
class LedgerErrorWorkflow:
    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(
            "test.reserve_with_bad_reference",
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )


async def test_an_untranslated_database_error_is_not_its_own_cause(
    ledger: Ledger, new_account: NewAccount
) -> None:
    account = await new_account("GBP")
    with pytest.raises(Exception) as caught:
        await ledger.reserve(
            account,
            "GBP",
            Decimal("1.00"),
            reference_type=TOO_LONG_REFERENCE,
            reference_id=uuid.uuid4(),
        )
    chain: list[BaseException] = []
    e: BaseException | None = caught.value
    while e is not None:
        assert e not in chain, "an exception in its own cause chain"
        chain.append(e)
        e = e.__cause__
    assert "too long" in str(caught.value)


async def test_the_real_database_message_reaches_the_workflow_history(
    temporal_client: Client, task_queue: str, ledger: Ledger, new_account: NewAccount
) -> None:
    account = await new_account("GBP")
    activities = HoldActivities(ledger, account)
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[LedgerErrorWorkflow],
        activities=[activities.reserve],
    ):
        with pytest.raises(WorkflowFailureError) as failed:
            await temporal_client.execute_workflow(
                LedgerErrorWorkflow.run, id=f"ledger-error-{uuid.uuid4()}", task_queue=task_queue
            )
    activity_error = failed.value.cause
    assert isinstance(activity_error, ActivityError)
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert "Failed building exception result" not in cause.message
    assert "RecursionError" not in (cause.type or "")
    assert "value too long for type character varying(50)" in cause.message

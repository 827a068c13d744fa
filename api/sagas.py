"""The API's side of the payment sagas: starting them, and asking, updating and signalling them through
the Temporal client, with one translation of Temporal's answers (`saga_answers`) for every route.

Temporal unreachable, or an update whose answer did not come back, is an unknown outcome: 503 with
`Retry-After` (the request changed nothing the client can see, or is safe to repeat); a saga that does
not exist (finished, or never started) or refuses the update is the route's own answer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import SettingsDep, TemporalDep
from api.errors import ProblemError, ServiceUnavailable
from config import Settings
from models.payments import (
    BankPayment,
    Decision,
    DecisionOutcome,
    PayoutUpdate,
    Resolution,
    WithdrawalInput,
    WithdrawalState,
    withdrawal_workflow_id,
)
from models.payments_api import WebhookAck
from services import payments
from services.decision_tokens import DecisionTokens
from temporal import search_attributes as sa
from temporal import task_queues
from workflows.deposits import DepositWorkflow, deposit_workflow_id
from workflows.withdrawals import WithdrawalWorkflow

START_TIMEOUT = timedelta(seconds=10)
_DECISION_REFUSALS = ("self_approval", "not_an_approver", "unknown_approver", "unproven")


@contextmanager
def saga_answers(*, gone: ProblemError, refused: ProblemError | None = None) -> Iterator[None]:
    """Translate what Temporal answers to a call on a running saga: no such saga → `gone`; the saga's
    update validator refused → `refused` (or `gone`); Temporal down or no answer in time → 503."""
    try:
        yield
    except WorkflowUpdateFailedError as e:
        raise (refused or gone) from e
    except WorkflowUpdateRPCTimeoutOrCancelledError as e:  # no answer in time: unknown, ask again
        raise ServiceUnavailable("temporal") from e
    except RPCError as e:
        if e.status is RPCStatusCode.NOT_FOUND:
            raise gone from e
        raise ServiceUnavailable("temporal") from e


async def start_withdrawal(client: Client, data: WithdrawalInput) -> Any:
    """Start the saga with the attributes ops filter on (customer, currency, status). Bounded in time: the
    request's transaction (and the customer's row lock) stays open until the start answers."""
    return await client.start_workflow(
        WithdrawalWorkflow.run,
        data,
        id=withdrawal_workflow_id(data.withdrawal_id),
        task_queue=task_queues.PAYMENTS,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.CUSTOMER_ID, str(data.user_id)),
                SearchAttributePair(sa.CURRENCY, data.currency),
                SearchAttributePair(sa.WITHDRAWAL_STATUS, "PENDING"),
            ]
        ),
        rpc_timeout=START_TIMEOUT,
    )


class PaymentSagas:
    """The payment sagas as this request sees them (`services.payments.WithdrawalSagas` and the rest)."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    # --- withdrawals ------------------------------------------------------------------------------

    async def start(
        self, accepted: payments.AcceptedWithdrawal, *, user_id: uuid.UUID, currency: str, amount: Decimal
    ) -> None:
        s = self.settings
        data = WithdrawalInput(
            withdrawal_id=accepted.withdrawal_id, user_id=user_id, currency=currency, amount=amount,
            fee=accepted.fee, notional_gbp=accepted.notional_gbp, destination=accepted.destination,
            provider=accepted.provider, approvals_required=accepted.approvals_required,
            approval_timeout_seconds=s.withdrawal_approval_timeout_hours * 3600,
            halt_poll_seconds=s.withdrawal_halt_poll_seconds,
            settle_poll_seconds=s.withdrawal_settle_poll_seconds,
            absence_checks=s.withdrawal_absence_checks,
            absence_interval_seconds=s.withdrawal_absence_interval_seconds, requested_at=datetime.now(UTC),
        )  # fmt: skip
        try:
            await start_withdrawal(self.client, data)
        except WorkflowAlreadyStartedError as e:
            # A retry (same Idempotency-Key) whose first attempt started the saga, then lost its
            # transaction: go on if that saga still waits for its row, else nothing is recorded.
            handle = self.client.get_workflow_handle(withdrawal_workflow_id(accepted.withdrawal_id))
            if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
                raise ProblemError(
                    409,
                    "withdrawal_not_started",
                    "this request could not be completed; send it again with a new Idempotency-Key",
                ) from e
        except RPCError as e:
            raise ServiceUnavailable("temporal") from e

    async def acceptance(self, withdrawal_id: uuid.UUID) -> tuple[str, str | None]:
        handle = self.client.get_workflow_handle(
            withdrawal_workflow_id(withdrawal_id), result_type=WithdrawalState
        )
        try:
            outcome = await handle.execute_update("accepted", result_type=WithdrawalState)
        except (RPCError, WorkflowUpdateFailedError):  # the saga ended before it could be asked
            outcome = await handle.result()
        return outcome.status, outcome.reason

    async def cancel(self, withdrawal_id: uuid.UUID) -> None:
        """Ask the saga to cancel and wait for it to end; 409 if it is being sent or already final."""
        handle = self.client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id))
        final = ProblemError(409, "not_cancellable", "the withdrawal can no longer be cancelled")
        with saga_answers(gone=final):
            await handle.execute_update(WithdrawalWorkflow.cancel)
        await handle.result()

    async def decide(
        self, withdrawal_id: uuid.UUID, name: str, arg: Decision | Resolution
    ) -> DecisionOutcome:
        """A staff decision (approve/reject/resolve) as an update; a refused one is 403 or 409."""
        handle = self.client.get_workflow_handle(withdrawal_workflow_id(withdrawal_id))
        gone = ProblemError(404, "not_found", "no such withdrawal waiting for a decision")
        with saga_answers(gone=gone):
            # By name: the SDK's typing of async update handlers yields a coroutine type here.
            outcome = await handle.execute_update(name, arg, result_type=DecisionOutcome)
        if not outcome.accepted:
            status = 403 if outcome.code in _DECISION_REFUSALS else 409
            raise ProblemError(status, outcome.code, outcome.detail or outcome.code)
        return outcome

    # --- the bank's events (services.payments.BankEventSagas) ---------------------------------------

    async def start_deposit(self, payment: BankPayment) -> WebhookAck:
        wf_id = deposit_workflow_id(payment.bank_tx_id)
        try:
            await self.client.start_workflow(
                DepositWorkflow.run,
                payment,
                id=wf_id,
                task_queue=task_queues.PAYMENTS,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes([SearchAttributePair(sa.CURRENCY, payment.currency)]),
            )
        except WorkflowAlreadyStartedError:
            return WebhookAck(status="duplicate", workflow_id=wf_id)
        return WebhookAck(status="accepted", workflow_id=wf_id)

    async def payout_settled(self, kind: str, data: dict[str, Any]) -> WebhookAck:
        """The bank's word on a payout, signed for the saga (the webhook's signature was verified), so it
        can tell this outcome from a signal anyone who reaches Temporal could send."""
        wf_id = withdrawal_workflow_id(data.get("external_id", ""))
        status = kind.removeprefix("payout.")
        payout_id = str(data.get("payout_id", ""))
        try:
            withdrawal_id = uuid.UUID(str(data.get("external_id", "")))
        except ValueError:
            return WebhookAck(status="ignored")
        proof = DecisionTokens.from_secret(self.settings.jwt_secret).issue(
            actor_id=None, withdrawal_id=withdrawal_id, action=f"payout_{status}", now=datetime.now(UTC),
            detail=payout_id,
        )  # fmt: skip
        update = PayoutUpdate(
            payout_id=payout_id, status=status, reason=str(data.get("reason") or ""), proof=proof
        )
        gone = ProblemError(404, "not_found")
        try:
            with saga_answers(gone=gone):  # Temporal down: 503, and the bank redelivers
                await self.client.get_workflow_handle(wf_id).signal(WithdrawalWorkflow.payout_settled, update)
        except ProblemError as e:
            if e is not gone:
                raise
            # Finished or unknown: the saga already learned the outcome by asking the bank.
            return WebhookAck(status="ignored", workflow_id=wf_id)
        return WebhookAck(status="accepted", workflow_id=wf_id)


async def payment_sagas(client: TemporalDep, settings: SettingsDep) -> PaymentSagas:
    return PaymentSagas(client, settings)


PaymentSagasDep = Annotated[PaymentSagas, Depends(payment_sagas)]
__all__ = ["PaymentSagas", "PaymentSagasDep", "saga_answers", "start_withdrawal"]

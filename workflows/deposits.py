"""Deposit sagas: a GBP Faster Payment reported by the bank's webhook, and the crypto deposit poller.

`DepositWorkflow` runs once per bank transaction: its id is `deposit-bank-<bank tx id>`, so Temporal
itself refuses a second start for a duplicated or concurrent webhook, and the credit is keyed by the same
id in the ledger as a second line of defence.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.aml import AmlActivities
    from activities.errors import ErrorType
    from activities.payments import PaymentActivities
    from activities.screening import ScreeningActivities
    from models.aml import AmlSubjectType, ScreenRequest
    from models.payments import BankPayment, CryptoPollInput, CryptoPollResult, DepositResult
    from models.screening_jobs import PayerScreeningInput

DB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=10),
    non_retryable_error_types=[ErrorType.LEDGER_REFUSED],
)
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=3)


def deposit_workflow_id(bank_tx_id: str) -> str:
    return f"deposit-bank-{bank_tx_id}"


@workflow.defn
class DepositWorkflow:
    """Credits one inbound bank payment exactly once (customer by reference, else suspense + ops alert),
    records the deposit and emails the customer. The email is best effort: a failed mail never undoes
    or repeats the credit."""

    @workflow.run
    async def run(self, payment: BankPayment) -> DepositResult:
        result = await workflow.execute_activity_method(
            PaymentActivities.credit_bank_deposit,
            payment,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        if result.user_id is not None and not result.replayed:
            try:
                await workflow.execute_activity_method(
                    PaymentActivities.notify_deposit,
                    result,
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=NOTIFY_RETRY,
                )
            except ActivityError:
                workflow.logger.warning("deposit %s credited but the email failed", result.deposit_id)
        if (
            result.user_id is not None
            and payment.payer_name.strip()
            and workflow.patched("screen-payer-name")
        ):
            await self._screen_payer(payment, result)
        if result.user_id is not None and workflow.patched("aml-screen-deposit"):
            await self._aml_screen(result)
        return result

    async def _aml_screen(self, result: DepositResult) -> None:
        """AML monitoring after the credit: alerts for compliance, never a block on the credit (which
        has happened). Retried for a while; a screening that still fails is logged for ops, and the
        scheduled sweep looks at the customer's window rules anyway."""
        try:
            await workflow.execute_activity_method(
                AmlActivities.screen_deposit,
                ScreenRequest(subject_type=AmlSubjectType.DEPOSIT, subject_id=str(result.deposit_id)),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=20),
            )
        except ActivityError:
            workflow.logger.error("OPS ALERT deposit %s: not screened by AML monitoring", result.deposit_id)

    async def _screen_payer(self, payment: BankPayment, result: DepositResult) -> None:
        """The payer's name screened after the credit: a possible match raises a compliance review and
        never touches the credit. A check that cannot be made is an ops alert, not a failed deposit."""
        assert result.user_id is not None
        try:
            await workflow.execute_activity_method(
                ScreeningActivities.screen_deposit_payer,
                PayerScreeningInput(
                    deposit_id=result.deposit_id, user_id=result.user_id, payer_name=payment.payer_name
                ),
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=20),
            )
        except ActivityError:
            workflow.logger.error("OPS ALERT deposit %s: payer name not screened", result.deposit_id)


@workflow.defn
class CryptoDepositPollWorkflow:
    """One poll of the providers' deposit histories (started by a Temporal schedule): credits each
    deposit with enough confirmations once, keyed by provider + chain transaction id."""

    @workflow.run
    async def run(self, data: CryptoPollInput) -> CryptoPollResult:
        return await workflow.execute_activity_method(
            PaymentActivities.poll_crypto_deposits,
            data,
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=5),
        )

"""Activities of the deposit, withdrawal and float sagas: thin, idempotent steps over services.payments,
the ledger, the bank and the exchange adapters.

Idempotency: every step is keyed by a business id (the bank's transaction id, the withdrawal id), so a
retry after a crash or timeout changes nothing twice. Sending money is the one step that can't simply be
repeated: `send_withdrawal` runs once per send decision and reports anything but an explicit answer as
"unknown"; the workflow then looks our id up (`settlement_status`) until the bank or venue shows the
truth. "Not found" is not failure: only repeated lookups over time count as absence, and even then the
hold is kept and ops decide (NEEDS_ATTENTION).

Business outcomes cross the boundary as `ApplicationError(type=..., non_retryable=True)` with stable
type strings, through the one registry and mapping in `activities/errors.py`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorType, application_errors
from activities.heartbeat import heartbeating
from config import Settings
from models.aml import AmlSubjectType
from models.assets import FIAT
from models.market import VenueDeposit
from models.payments import (
    AttentionNotice,
    BankPayment,
    CompleteInput,
    CryptoPollInput,
    CryptoPollResult,
    DecisionCheck,
    DecisionOutcome,
    DepositResult,
    ExecutionOutcome,
    FloatCheckInput,
    FloatCheckResult,
    HaltQuery,
    ProofCheck,
    ReleaseInput,
    StatusChange,
    WithdrawalInput,
    WithdrawalNotice,
    WithdrawalStatus,
)
from providers.bank import BankAmbiguous, BankClient, BankError, BankPayout, BankRefused, BankRetryable
from providers.email import EmailSender
from providers.exchanges.base import (
    AmbiguousPlacement,
    ExecutionAdapter,
    RetryableVenueError,
    TerminalVenueError,
    UnsupportedByVenue,
    VenueError,
)
from services import holds, payments
from services.aml import freeze as aml_freeze
from services.aml.monitor import screen as aml_screen
from services.decision_tokens import DecisionTokens, ProofInvalid
from services.ledger import InsufficientFunds, Ledger
from services.notifications import NotificationEvent, enqueue
from services.payments import withdrawal_notices

log = logging.getLogger("broker.payments")


def venue_client_id(withdrawal_id: uuid.UUID) -> str:
    """Our id for the withdrawal at the venue (Binance `withdrawOrderId`): derived, so a retry reuses it."""
    return f"wd{withdrawal_id.hex}"


class PaymentActivities:
    """Constructed once per worker with its clients (the process's one `Ledger`); `adapters` and `bank`
    are factories so the worker builds (and the tests inject) them without a network call at start."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        ledger: Ledger,
        settings: Settings,
        bank: Callable[[], BankClient],
        adapters: Callable[[], Mapping[str, ExecutionAdapter]],
        email: EmailSender | None,
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._settings = settings
        self._bank = bank
        self._adapters = adapters
        self._email = email
        self._tokens = DecisionTokens.from_secret(settings.jwt_secret)

    def _adapter(self, name: str) -> ExecutionAdapter:
        adapter = self._adapters().get(name)
        if adapter is None:
            raise ApplicationError(
                f"no provider {name!r}", type=ErrorType.UNKNOWN_PROVIDER, non_retryable=True
            )
        return adapter

    # --- deposits --------------------------------------------------------------------------

    @activity.defn(name="payments.credit_bank_deposit")
    async def credit_bank_deposit(self, payment: BankPayment) -> DepositResult:
        """Credit the customer (or suspense) once, keyed by the bank's transaction id."""
        with application_errors():
            result = await payments.credit_bank_deposit(self._engine, self._ledger, payment)
        return result

    @activity.defn(name="payments.notify_deposit")
    async def notify_deposit(self, result: DepositResult) -> None:
        """The customer's notification, to the outbox keyed by the deposit: the saga retries this until it
        commits, and a retry after the commit enqueues nothing new (issue 17)."""
        if result.user_id is None or result.balance_after is None:
            return
        async with self._engine.begin() as conn:
            await enqueue(
                conn,
                event=NotificationEvent.DEPOSIT_CONFIRMED,
                user_id=result.user_id,
                payload={
                    "currency": result.currency,
                    "amount": str(result.amount),
                    "balance": str(result.balance_after),
                },
                dedupe_key=f"deposit:{result.deposit_id}:confirmed",
            )

    @activity.defn(name="payments.poll_crypto_deposits")
    async def poll_crypto_deposits(self, data: CryptoPollInput) -> CryptoPollResult:
        """Credit every deposit the providers report as confirmed that we have not credited yet.

        Credited means: the venue reports it complete (`ok`, it has credited our omnibus) and it has at
        least `min_confirmations`. Each credit is keyed by provider + chain tx id + output, so overlapping
        polls credit once and a transaction paying two customers credits both.

        Each deposit is handled on its own: one we cannot credit (an asset we do not list, an amount
        finer than our scale) is held in suspense with an ops alert, and one that fails for any other
        reason is logged as an error and tried again next poll; neither stops the deposits after it.
        """
        out = CryptoPollResult()
        for name in data.providers or [self._settings.crypto_deposit_provider]:
            adapter = self._adapter(name)
            deposits = await heartbeating(adapter.deposits())
            # Float transfers between our venues arrive as deposits too: house money, never a customer's
            # (services/treasury.py books them); one whose transaction is not known yet waits a poll.
            from services import treasury

            own = await treasury.transfer_tx_hashes(self._engine)
            awaited = await treasury.pending_transfer_addresses(self._engine)
            for dep in deposits:
                activity.heartbeat(dep.tx_id)
                if treasury.normal_tx(dep.tx_id) in own or (name, dep.address or "") in awaited:
                    continue
                if dep.status != "ok" or dep.confirmations < data.min_confirmations:
                    out.waiting += 1
                    continue
                try:
                    await self._credit_one(name, dep, out)
                except Exception as e:  # isolation: this deposit waits for the next poll, the rest go on
                    out.errors += 1
                    log.error(
                        json.dumps(
                            {"alert": "ops.alert.deposit_poll_failed", "provider": name, "tx_id": dep.tx_id,
                             "address": dep.address, "venue_ref": dep.venue_ref, "error": type(e).__name__}
                        )
                    )  # fmt: skip
        return out

    async def _credit_one(self, provider: str, dep: VenueDeposit, out: CryptoPollResult) -> None:
        output = payments.deposit_output(dep.address, dep.output_index)
        if await payments.crypto_deposit_handled(self._engine, provider, dep.tx_id, output, dep.venue_ref):
            return
        notional = await self._value_in_gbp(provider, dep)
        result = await payments.credit_crypto_deposit(
            self._engine,
            self._ledger,
            provider=provider,
            tx_id=dep.tx_id,
            currency=dep.currency,
            amount=dep.amount,
            address=dep.address,
            confirmations=dep.confirmations,
            output_index=dep.output_index,
            venue_ref=dep.venue_ref,
            notional_gbp=notional,
        )
        if result.status == payments.DEPOSIT_HELD:
            out.held += 1
        elif result.replayed:
            return
        elif result.user_id is None:
            out.suspense += 1
        else:
            out.credited += 1
            try:
                await self.notify_deposit(result)
            except ApplicationError:  # credited; the email is best effort
                log.warning("deposit %s credited but the email failed", result.deposit_id)
            await self._aml_screen_deposit(result.deposit_id)

    async def _value_in_gbp(self, provider: str, dep: VenueDeposit) -> Decimal | None:
        """What the deposit is worth in GBP now (mid of the receiving venue's book), for AML monitoring's
        value rules. A venue that cannot price it does not hold up the credit: the deposit is recorded
        without a value and an ops alert says so (the AML rules then see it as worth nothing)."""
        if dep.currency == "GBP":
            return dep.amount
        try:
            book = await self._adapter(provider).order_book(f"{dep.currency}-GBP", depth=1)
            mid = (book.bids[0].price + book.asks[0].price) / 2
        except Exception as e:  # any failure: credit without a value, never skip the credit
            log.warning(
                json.dumps({"alert": "ops.alert.deposit_unvalued", "provider": provider, "tx_id": dep.tx_id,
                            "currency": dep.currency, "error": type(e).__name__})
            )  # fmt: skip
            return None
        return (dep.amount * mid).quantize(Decimal("0.01"))

    async def _aml_screen_deposit(self, deposit_id: uuid.UUID) -> None:
        """AML monitoring of a credited crypto deposit, as the GBP deposit saga does after its credit:
        alerts for compliance, never a change to the credit. Idempotent (alerts are keyed by the deposit);
        one that fails is logged and the scheduled sweep applies the window rules anyway."""
        try:
            await aml_screen(self._engine, AmlSubjectType.DEPOSIT, str(deposit_id))
        except Exception as e:
            log.error(
                json.dumps({"alert": "ops.alert.deposit_not_screened", "deposit_id": str(deposit_id),
                            "error": type(e).__name__})
            )  # fmt: skip

    # --- withdrawals -----------------------------------------------------------------------

    @activity.defn(name="payments.reserve_withdrawal")
    async def reserve_withdrawal(self, w: WithdrawalInput) -> uuid.UUID:
        """Hold amount + fee on the customer's account (idempotent by the withdrawal id).

        In one transaction with the hold, the withdrawal's row is locked and its state checked: a withdrawal
        that is finished (a stalled worker replaying an old task) or was never recorded (the API's
        transaction did not commit) gets no hold."""
        with application_errors():
            try:
                async with self._engine.begin() as conn:
                    await payments.lock_withdrawal_for_hold(conn, w.withdrawal_id)
                    account = await self._ledger.customer_account(w.user_id, w.currency, conn)
                    hold = await self._ledger.reserve(
                        account,
                        w.currency,
                        w.amount + w.fee,
                        reference_type=holds.WITHDRAWAL_HOLD,
                        reference_id=w.withdrawal_id,
                        step="reserve",
                        conn=conn,
                    )
                    await conn.execute(
                        text("UPDATE withdrawals SET hold_id = :h, updated_at = now() WHERE id = :id"),
                        {"h": hold.hold_id, "id": w.withdrawal_id},
                    )
                    await withdrawal_notices.requested(conn, w.withdrawal_id, w.user_id, w.currency, w.amount)
            except InsufficientFunds as e:  # the ledger's text names internal ids: the customer reads ours
                raise InsufficientFunds(
                    f"available {w.currency} balance does not cover {w.amount + w.fee}"
                ) from e
        return hold.hold_id

    @activity.defn(name="payments.discard_withdrawal")
    async def discard_withdrawal(self, change: StatusChange) -> None:
        """A request refused before anything was held leaves no withdrawal in the customer's list."""
        async with self._engine.begin() as conn:
            await payments.discard_withdrawal(conn, change.withdrawal_id, reason=change.reason or "")

    @activity.defn(name="payments.mark_withdrawal")
    async def mark_withdrawal(self, change: StatusChange) -> None:
        async with self._engine.begin() as conn:
            await payments.set_withdrawal_status(
                conn, change.withdrawal_id, change.status, reason=change.reason
            )

    @activity.defn(name="payments.withdrawal_needs_attention")
    async def withdrawal_needs_attention(self, notice: AttentionNotice) -> None:
        """Row to NEEDS_ATTENTION (the admin queue lists it) and an ops alert, in one transaction."""
        async with self._engine.begin() as conn:
            await payments.set_withdrawal_status(
                conn, notice.withdrawal_id, WithdrawalStatus.NEEDS_ATTENTION, reason=notice.reason
            )
            await payments.alert(
                conn,
                "ops.alert.withdrawal_needs_attention",
                target_type="withdrawal",
                target_id=str(notice.withdrawal_id),
                reason=notice.reason,
            )

    @activity.defn(name="payments.judge_decision")
    async def judge_decision(self, check: DecisionCheck) -> DecisionOutcome:
        """Verify the decision's proof, then read the approver's roles from the users table: the workflow
        trusts no caller's claim."""
        verdict = await payments.judge_decision(
            self._engine,
            withdrawal_id=check.withdrawal_id,
            requester_id=check.requester_id,
            approver_id=check.approver_id,
            decision=check.decision,
            reason=check.reason,
            proof=self._proof(check.token, check.approver_id, check.withdrawal_id, check.decision),
        )
        return DecisionOutcome(accepted=verdict.accepted, code=verdict.code, detail=verdict.detail)

    @activity.defn(name="payments.verify_proof")
    async def verify_proof(self, check: ProofCheck) -> bool:
        """Whether an ops resolution or a payout outcome carries a valid proof; a refusal is audited."""
        problem = self._proof(check.token, check.actor_id, check.withdrawal_id, check.action, check.detail)
        async with self._engine.begin() as conn:
            if check.action.startswith("resolve") and problem is None:
                problem = await payments.staff_problem(conn, check.actor_id, role="ops")
            await payments.audit(
                conn,
                f"withdrawal.{check.action}" + ("" if problem is None else ".refused"),
                actor_id=check.actor_id if problem is None else None,
                actor_type="staff" if check.actor_id else "webhook",
                target_type="withdrawal",
                target_id=str(check.withdrawal_id),
                claimed_actor=str(check.actor_id) if check.actor_id else None,
                detail=check.detail,
                refusal=problem,
            )
        return problem is None

    def _proof(
        self,
        token: str,
        actor_id: uuid.UUID | None,
        withdrawal_id: uuid.UUID,
        action: str,
        detail: str = "",
    ) -> str | None:
        """None if `token` proves the decision, else why not."""
        try:
            self._tokens.verify(
                token,
                actor_id=actor_id,
                withdrawal_id=withdrawal_id,
                action=action,
                now=datetime.now(UTC),
                detail=detail,
            )
        except ProofInvalid as e:
            return str(e)
        return None

    @activity.defn(name="payments.currency_halted")
    async def currency_halted(self, query: HaltQuery) -> str | None:
        """Why the withdrawal waits (the currency's halt, or the customer's account frozen, in neutral
        words), or None when it may go ahead."""
        return await aml_freeze.withdrawal_gate_reason(
            self._engine, currency=query.currency, user_id=query.user_id
        )

    @activity.defn(name="payments.send_withdrawal")
    async def send_withdrawal(self, w: WithdrawalInput) -> ExecutionOutcome:
        """Send the money, once. The workflow runs this at most once per send decision (no activity
        retries): anything but an explicit answer is "unknown", resolved by looking our id up, never by
        sending again. Only a send that provably never reached the other side is "not_sent"."""
        # Heartbeating while the bank or venue answers: a worker that dies mid-send is noticed within the
        # heartbeat timeout, and the workflow looks the outcome up.
        if w.currency in FIAT:
            return await heartbeating(self._payout(w))
        return await heartbeating(self._crypto_withdraw(w))

    async def _payout(self, w: WithdrawalInput) -> ExecutionOutcome:
        d = w.destination
        try:
            payout = await self._bank().create_payout(
                external_id=str(w.withdrawal_id),
                amount=w.amount,
                sort_code=d.sort_code or "",
                account_number=d.account_number or "",
                name=d.holder_name or "",
                reference=f"Broker withdrawal {str(w.withdrawal_id)[:8]}",
            )
        except BankRefused as e:
            return ExecutionOutcome(status="failed", reason=str(e))
        except BankAmbiguous as e:
            return ExecutionOutcome(status="unknown", reason=str(e))
        except BankRetryable as e:  # unreachable before sending, or rate limited: never received
            return ExecutionOutcome(status="not_sent", reason=str(e))
        return _payout_outcome(payout)

    async def _crypto_withdraw(self, w: WithdrawalInput) -> ExecutionOutcome:
        adapter = self._adapters().get(w.provider)
        if adapter is None:  # nothing was sent: safe to give the money back
            return ExecutionOutcome(status="failed", reason=f"no provider {w.provider!r}")
        try:
            sent = await adapter.withdraw(
                w.currency,
                w.amount,
                w.destination.address or "",
                venue_client_id(w.withdrawal_id),
                w.destination.tag,
            )
        except AmbiguousPlacement as e:
            return ExecutionOutcome(status="unknown", reason=str(e))
        except TerminalVenueError as e:
            return ExecutionOutcome(status="failed", reason=str(e))
        except RetryableVenueError as e:  # rate limit, maintenance: refused before processing
            return ExecutionOutcome(status="not_sent", reason=str(e))
        if sent.withdrawal_id:
            try:
                await payments.record_provider_ref(self._engine, w.withdrawal_id, sent.withdrawal_id)
            except SQLAlchemyError:  # the saga still has it; lookups that need it say "unknown"
                log.exception("withdrawal %s: the venue's reference could not be recorded", w.withdrawal_id)
        return ExecutionOutcome(
            status=_venue_status(sent.status),
            provider_ref=sent.withdrawal_id or None,
            tx_hash=sent.tx_hash,
            network_fee=sent.fee,
        )

    @activity.defn(name="payments.settlement_status")
    async def settlement_status(self, w: WithdrawalInput) -> ExecutionOutcome:
        """Ask the bank/venue how our payout stands, by our id. No record is "absent" and no answer is
        "unknown": neither is a failure, and the workflow decides what repeated absence means."""
        return await heartbeating(self._settlement_status(w))

    async def _settlement_status(self, w: WithdrawalInput) -> ExecutionOutcome:
        if w.currency in FIAT:
            try:
                payout = await self._bank().find_payout(str(w.withdrawal_id))
            except BankError as e:
                return ExecutionOutcome(status="unknown", reason=f"payout lookup failed: {e}")
            if payout is None:
                return ExecutionOutcome(status="absent", reason="the bank shows no record of the payout")
            return _payout_outcome(payout)
        adapter = self._adapters().get(w.provider)
        if adapter is None:
            return ExecutionOutcome(status="unknown", reason=f"no provider {w.provider!r} to ask")
        # A venue that keeps no id of ours is asked by the reference its send answered with, if any.
        venue_ref = await payments.withdrawal_provider_ref(self._engine, w.withdrawal_id)
        try:
            found = await adapter.withdrawal_status(
                w.currency, venue_client_id(w.withdrawal_id), since=w.requested_at, venue_ref=venue_ref
            )
        except UnsupportedByVenue:
            return ExecutionOutcome(
                status="unknown",
                reason=f"{adapter.name} cannot look this withdrawal up: it keeps no id of ours and its "
                "answer to the send (its reference) never came",
            )
        except VenueError as e:
            return ExecutionOutcome(status="unknown", reason=f"withdrawal lookup failed: {type(e).__name__}")
        if found is None:
            return ExecutionOutcome(status="absent", reason="the venue shows no record of the withdrawal")
        return ExecutionOutcome(
            status=_venue_status(found.status),
            provider_ref=found.withdrawal_id,
            tx_hash=found.tx_hash,
            network_fee=found.fee,
        )

    @activity.defn(name="payments.complete_withdrawal")
    async def complete_withdrawal(self, data: CompleteInput) -> None:
        w = data.withdrawal
        with application_errors():
            await payments.complete_withdrawal(
                self._engine,
                self._ledger,
                withdrawal_id=w.withdrawal_id,
                user_id=w.user_id,
                currency=w.currency,
                amount=w.amount,
                fee=w.fee,
                hold_id=data.hold_id,
                provider=w.provider,
                provider_ref=data.provider_ref,
                tx_hash=data.tx_hash,
                network_fee=data.network_fee or Decimal(0),
                network_fee_payer=self._settings.crypto_network_fee_payer,
            )

    @activity.defn(name="payments.release_withdrawal")
    async def release_withdrawal(self, data: ReleaseInput) -> None:
        with application_errors():
            await payments.release_withdrawal(
                self._engine,
                self._ledger,
                withdrawal_id=data.withdrawal_id,
                hold_id=data.hold_id,
                status=data.status,
                reason=data.reason,
            )

    @activity.defn(name="payments.notify_withdrawal")
    async def notify_withdrawal(self, notice: WithdrawalNotice) -> None:
        """The status notification was written with the status itself (`set_withdrawal_status`); this
        enqueues it again under the same key, a no-op, for histories whose status step predates that."""
        async with self._engine.begin() as conn:
            await withdrawal_notices.status_changed(
                conn,
                notice.withdrawal_id,
                notice.user_id,
                notice.currency,
                notice.amount,
                WithdrawalStatus(notice.status),
            )

    # --- float -----------------------------------------------------------------------------

    @activity.defn(name="payments.check_float")
    async def check_float(self, data: FloatCheckInput) -> FloatCheckResult:
        """Compare each omnibus balance with its threshold; below it, alert and request a top-up to
        target (one open request per omnibus); back above it, close the open request."""
        out = FloatCheckResult()
        for name in data.providers or [self._settings.crypto_provider]:
            adapter = self._adapter(name)
            for currency, threshold in sorted(data.thresholds.items()):
                balance = (await adapter.balance(currency)).free
                out.checked += 1
                if balance < threshold:
                    target = data.targets.get(currency, threshold)
                    top_up_id, _ = await payments.request_top_up(
                        self._engine,
                        provider=name,
                        currency=currency,
                        balance=balance,
                        threshold=threshold,
                        target=max(target, threshold),
                    )
                    out.below.append(f"{name}:{currency}")
                    out.requested.append(top_up_id)
                else:
                    await payments.close_top_ups(self._engine, provider=name, currency=currency)
        return out


def _payout_outcome(p: BankPayout) -> ExecutionOutcome:
    status = p.status if p.status in ("completed", "failed") else "pending"
    return ExecutionOutcome(status=status, provider_ref=p.payout_id, reason=p.reason)


def _venue_status(status: str) -> str:
    """ccxt's transaction status onto ours: ok -> completed; failed/canceled -> failed; else pending."""
    if status == "ok":
        return "completed"
    if status in ("failed", "canceled", "cancelled", "rejected"):
        return "failed"
    return "pending"


__all__ = ["Decimal", "PaymentActivities", "venue_client_id"]

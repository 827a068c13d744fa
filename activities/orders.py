"""Order activities: thin, idempotent wrappers over services/orders.py, the ledger, the router and
the execution adapters.

Idempotency, step by step:
- `accept`: the order row is inserted with ON CONFLICT DO NOTHING on its id.
- `reserve`: the hold's key is `ORDER:<id>:reserve`; the limit check excludes this order itself.
- `place`: the client order id is derived from (order id, attempt). A retry of the activity (after a
  crash or timeout, when the first attempt may have sent) never sends: it reports the outcome unknown
  and the workflow looks that id up (`resolve_placement`), so a second order is never produced.
- `settle`: increments are computed against `provider_fills` (locked) and the ledger key is derived
  from the cumulative fills booked, so a replay books nothing twice.
- `mark` / `notify`: plain status writes and a message; repeating them is harmless.

Failures cross to the workflow as `ApplicationError`s with stable `type`s, through the one registry and
mapping in `activities/errors.py`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import ErrorType, application_errors
from activities.heartbeat import heartbeating
from activities.lookup_lanes import LookupLanes
from config import Settings
from models.assets import quantum
from models.market import (
    BestExecutionRecord,
    OrderType,
    PlaceOrderRequest,
    Side,
    VenueOrder,
    split_symbol,
)
from models.order_flow import (
    AcceptResult,
    MarkRequest,
    NotifyRequest,
    OrderStatus,
    PlacementLookup,
    PlaceRequest,
    QuoteRequest,
    Reservation,
    ReserveRequest,
    ResolutionCheck,
    ResolutionOutcome,
    ResolveRequest,
    SettleRequest,
    SettleResult,
    VenueOrderRef,
)
from providers.exchanges.base import (
    AmbiguousPlacement,
    ExecutionAdapter,
    RetryableVenueError,
    TerminalVenueError,
    VenueError,
)
from providers.exchanges.ccxt_adapter import client_order_id
from services import first_trade_gates, holds, order_reasons, payments
from services import orders as svc
from services.aml import freeze as aml_freeze
from services.decision_tokens import DecisionTokens, ProofInvalid
from services.ledger import HoldNotActive, InsufficientFunds, Ledger, LedgerError, Leg
from services.orders import notices as order_notices
from services.router import Router

log = logging.getLogger("activities.orders")

DEFAULT_MAX_SLIPPAGE = Decimal("0.01")
T = TypeVar("T")


def _unresolved(provider: str, why: str) -> ApplicationError:
    return ApplicationError(f"{provider}: placement outcome unknown ({why})", type=ErrorType.UNRESOLVED,
                            non_retryable=True)  # fmt: skip


class OrderActivities:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        ledger: Ledger,
        router: Router,
        adapters: Mapping[str, ExecutionAdapter],
        settings: Settings,
        email: object | None = None,
        lanes: LookupLanes | None = None,
    ) -> None:
        self._engine = engine
        self._ledger = ledger
        self._router = router
        self._adapters = adapters
        self._settings = settings
        self._email = email
        self._tokens = DecisionTokens.from_secret(settings.jwt_secret)
        # Lookups for unknown placements take turns per venue, so they never starve placing.
        self._lanes = lanes if lanes is not None else LookupLanes()

    # -- local activities (database and quoting) --

    @activity.defn(name="order.accept")
    async def accept(self, req: svc.OrderRequest) -> AcceptResult:
        """Validate the order's shape and the customer; record the order once."""
        with application_errors():
            svc.validate(req)
            async with self._engine.begin() as conn:
                status, tier, user_status = await svc.insert_order(conn, req)
                frozen = await aml_freeze.is_frozen(conn, req.user_id)
            if user_status != "ACTIVE":
                raise svc.OrderRejected("account_frozen", f"the account is {user_status.lower()}")
            if tier < 1:
                raise svc.OrderRejected("kyc_required", "KYC tier 0 cannot trade; complete identity checks")
            if status is OrderStatus.PENDING:  # later steps may already hold funds for this very order
                if frozen:  # compliance froze the account: neutral words, no tipping off
                    raise svc.OrderRejected(aml_freeze.ORDER_REFUSAL_CODE, aml_freeze.ORDER_REFUSAL_TEXT)
                await self._first_trade_gates(req)
                await self._cheap_checks(req, tier)
        return AcceptResult(status=status, kyc_tier=tier)

    async def _first_trade_gates(self, req: svc.OrderRequest) -> None:
        """FCA PS23/6: no trade until risk warning, cooling-off, categorisation and appropriateness are
        passed (services/first_trade_gates.py); the refusal names the gate."""
        if not self._settings.first_trade_gates_enforced:
            return
        try:
            async with self._engine.connect() as conn:
                await first_trade_gates.enforce(conn, req.user_id)
        except first_trade_gates.FirstTradeGateClosed as e:
            raise svc.OrderRejected(e.code, e.detail) from e

    async def _cheap_checks(self, req: svc.OrderRequest, tier: int) -> None:
        """The trading limit and the funds, where they are known without a price, before any venue is
        asked (issue 11 item 4); the reservation checks both again, atomically, after the quote."""
        value = svc.value_floor(req)
        if value is not None:
            async with self._engine.connect() as conn:
                used = await svc.trading_used(conn, user_id=req.user_id, order_id=req.order_id)
            svc.refuse_over_limit(kyc_tier=tier, used=used, notional_gbp=value)
        need = svc.funds_needed(req, self._settings.customer_taker_fee)
        if need is None:
            return
        currency, amount = need
        available = (
            await self._ledger.balance(await self._ledger.customer_account(req.user_id, currency))
        ).available
        if available < amount:
            raise InsufficientFunds(
                f"insufficient {currency}: the order needs {amount} {currency}, {available} is available"
            )

    @activity.defn(name="order.quote")
    async def quote(self, req: QuoteRequest) -> BestExecutionRecord:
        """Ask the router where to send the order (or a fallback for one leg)."""
        order = req.order
        slippage = order.max_slippage if order.max_slippage is not None else DEFAULT_MAX_SLIPPAGE
        if order.type is OrderType.LIMIT:
            slippage = Decimal("0.5")  # a limit order's price is its guard; the router only picks the venue
        amount = req.amount if req.amount is not None else order.amount
        quote_amount = None if req.amount is not None else order.quote_amount
        with application_errors():
            record = await self._router.quote(
                order.symbol,
                order.side,
                amount=amount,
                quote_amount=quote_amount,
                max_slippage=slippage,
                exclude=req.exclude,
            )
            if quote_amount is None:
                return record
            reference = record.slippage_reference or record.all_in_price
            assert reference is not None
            return svc.size_quote_budget(
                record,
                quote_amount=quote_amount,
                price_cap=svc.protective_price(order.side, reference, slippage),
                fee_rate=self._settings.customer_taker_fee,
                lot_step=lambda provider: self._lot_step(provider, order.symbol),
            )

    def _lot_step(self, provider: str, symbol: str) -> Decimal:
        base, _ = split_symbol(symbol)
        adapter = self._adapters.get(provider)
        try:
            return adapter.rules(symbol).amount_step if adapter is not None else quantum(base)
        except VenueError:  # markets not loaded: the base scale, and the adapter rounds the rest
            return quantum(base)

    @activity.defn(name="order.reserve")
    async def reserve(self, req: ReserveRequest) -> Reservation:
        """Check the KYC trading limit and reserve the funds, atomically, in one transaction."""
        order, record = req.order, req.record
        fee_rate = self._settings.customer_taker_fee
        slippage = order.max_slippage if order.max_slippage is not None else DEFAULT_MAX_SLIPPAGE
        reference = record.slippage_reference or record.all_in_price
        if reference is None:
            raise ApplicationError("no reference price", type=ErrorType.NO_ROUTE, non_retryable=True)
        expected_amount = record.amount if order.amount is None else order.amount
        currency, hold_amount, cap, notional = svc.plan_reservation(
            order,
            expected_amount=expected_amount,
            expected_quote=record.quote_amount,
            reference_price=reference,
            fee_rate=fee_rate,
            max_slippage=slippage,
        )
        with application_errors():
            try:
                async with self._engine.begin() as conn:
                    # A late replay (a stalled worker) must not reserve for an order already finished.
                    await holds.lock_live_order(conn, order.order_id)
                    # The customer's lock, and their tier read under it (one round trip).
                    tier = await svc.lock_customer(conn, order.user_id)
                    await svc.check_trading_limit(
                        conn,
                        user_id=order.user_id,
                        order_id=order.order_id,
                        kyc_tier=tier,
                        notional_gbp=notional,
                        locked=True,
                    )
                    account = await self._ledger.customer_account(order.user_id, currency, conn=conn)
                    hold = await self._ledger.reserve(
                        account,
                        currency,
                        hold_amount,
                        reference_type="ORDER",
                        reference_id=order.order_id,
                        conn=conn,
                    )
                    reservation = Reservation(
                        hold_id=hold.hold_id,
                        hold_currency=currency,
                        hold_amount=hold_amount,
                        notional_gbp=notional,
                        price_cap=cap,
                        fee_rate=fee_rate,
                    )
                    await svc.mark_routed(
                        conn,
                        order_id=order.order_id,
                        reservation=reservation,
                        record=record.model_dump(mode="json"),
                    )
            except holds.OwnerFinished as e:
                raise svc.OrderRejected("order_finished", str(e)) from e
            except InsufficientFunds as e:  # the ledger's text names internal ids: the customer reads ours
                raise InsufficientFunds(
                    f"insufficient {currency}: the order needs {hold_amount} {currency} available"
                ) from e
        return reservation

    @activity.defn(name="order.settle")
    async def settle(self, req: SettleRequest) -> SettleResult:
        """Book what filled since the last settlement, in one transaction with fills, trades and the order."""
        base, quote = split_symbol(req.symbol)
        rate = self._settings.customer_maker_fee if req.maker else req.reservation.fee_rate
        async with self._engine.begin() as conn:
            increments = await svc.increments_since_last(conn, req.order_id, req.venue_orders)
            settled_now = any(i.amount > 0 for i in increments)
            if settled_now:
                quote_acc = await self._ledger.customer_account(req.user_id, quote, conn=conn)
                base_acc = await self._ledger.customer_account(req.user_id, base, conn=conn)
                legs, _fee = svc.settlement_legs(
                    side=req.side,
                    symbol=req.symbol,
                    quote_account=quote_acc,
                    base_account=base_acc,
                    hold_id=req.reservation.hold_id,
                    increments=increments,
                    fee_rate=rate,
                )
                legs = await self._within_hold(conn, legs, req.reservation, req.order_id)
                posting = svc.settlement_posting(
                    order_id=req.order_id, legs=legs, increments=increments, final=req.final, created_by=None
                )
                await self._ledger.post(posting, conn=conn)
                await svc.record_trades(
                    conn,
                    order_id=req.order_id,
                    user_id=req.user_id,
                    symbol=req.symbol,
                    side=req.side,
                    increments=increments,
                    fee_rate=rate,
                )
            elif req.final:
                try:
                    await self._ledger.release(req.reservation.hold_id, conn=conn)
                except HoldNotActive:
                    pass  # committed by an earlier settlement: nothing left to release
            status, filled, filled_quote, avg, fee = await svc.refresh_totals(
                conn, req.order_id, req.status, req.reason
            )
            if req.final:
                await holds.release_all(conn, self._ledger, holds.ORDER_HOLD, req.order_id)
        return SettleResult(
            status=status,
            filled_amount=filled,
            filled_quote=filled_quote,
            average_price=avg,
            fee=fee,
            settled_now=settled_now,
        )

    async def _within_hold(
        self, conn: AsyncConnection, legs: list[Leg], reservation: Reservation, order_id: uuid.UUID
    ) -> list[Leg]:
        """The customer pays at most what is left of the hold; rounding dust beyond it is the house's
        (`services.orders.fit_to_hold`), so a fill always settles."""
        row = (
            await conn.execute(
                text("SELECT amount - consumed FROM holds WHERE id = :h"),
                {"h": reservation.hold_id},
            )
        ).first()
        fitted, absorbed = svc.fit_to_hold(legs, reservation.hold_id, row[0] if row else Decimal(0))
        if absorbed and not svc.is_dust(reservation.hold_currency, absorbed):
            # More than rounding: a venue filled beyond the protective price or the size. The trade is
            # booked (the house pays); ops must find out why.
            log.error(
                json.dumps(
                    {
                        "event": "order.settle_beyond_hold",
                        "order_id": str(order_id),
                        "absorbed": str(absorbed),
                    }
                )
            )
        return fitted

    @activity.defn(name="order.mark")
    async def mark(self, req: MarkRequest) -> None:
        """Set a status without fills: final (rejected, failed, cancelled early: every hold of the
        order is released with it), or NEEDS_ATTENTION and back (holds kept).

        The customer's reason is in our words; venue text goes to the record for staff
        (`services.order_reasons`)."""
        reason, staff_detail = order_reasons.public_reason(req.status, req.reason)
        async with self._engine.begin() as conn:
            # The status first: its row lock orders this with any late reserve of the same order.
            if req.status is OrderStatus.ROUTED:
                await svc.clear_attention(conn, req.order_id)
            else:
                await svc.set_status(
                    conn,
                    req.order_id,
                    req.status,
                    reason,
                    req.record.model_dump(mode="json") if req.record else None,
                )
            if req.hold_id is not None:
                try:
                    await self._ledger.release(req.hold_id, conn=conn)
                except HoldNotActive:
                    pass
            if req.status.final:
                await holds.release_all(conn, self._ledger, holds.ORDER_HOLD, req.order_id)
            if staff_detail:
                await svc.add_staff_detail(conn, req.order_id, staff_detail)
        if staff_detail:
            log.warning(
                json.dumps(
                    {"event": "order.not_executed", "order_id": str(req.order_id), "detail": staff_detail}
                )
            )
        if req.status is OrderStatus.NEEDS_ATTENTION:
            log.error("OPS ALERT order %s needs attention: %s", req.order_id, req.reason)

    @activity.defn(name="order.verify_resolution")
    async def verify_resolution(self, check: ResolutionCheck) -> ResolutionOutcome:
        """Whether ops' word on an unknown placement counts: a decision token for this staff user,
        order and action, a user who is active with the ops role now, a token not used before, and a
        placement waiting for it. Audited either way; a bare or forged claim is audited as refused."""
        r = check.resolution
        code, why = "accepted", ""
        if not r.action:
            code, why = "unproven", "the resolution names neither a venue order nor its absence"
        elif check.reused:
            code, why = "unproven", "the token was already used"
        else:
            try:
                self._tokens.verify(
                    r.token,
                    actor_id=r.staff_id,
                    order_id=check.order_id,
                    action=r.action,
                    now=datetime.now(UTC),
                    detail=r.proof_detail,
                )
            except ProofInvalid as e:
                code, why = "unproven", str(e)
        async with self._engine.begin() as conn:
            if code == "accepted":
                problem = await payments.staff_problem(conn, r.staff_id, role="ops")
                if problem is not None:
                    code, why = "not_ops", problem
            if code == "accepted" and check.attempt is None:
                code, why = "not_waiting", "no placement of this order is waiting for ops"
            proven = code in ("accepted", "not_waiting")
            await payments.audit(
                conn,
                f"order.{r.action or 'resolution'}" + ("" if code == "accepted" else ".refused"),
                actor_id=r.staff_id if proven else None,
                actor_type="staff",
                target_type="order",
                target_id=str(check.order_id),
                claimed_actor=str(r.staff_id) if r.staff_id else (r.resolved_by or None),
                attempt=check.attempt,
                venue_order_id=r.provider_order_id,
                note=r.note,
                refusal=None if code == "accepted" else code,
                why=why or None,
            )
        if code != "accepted":
            log.warning(
                json.dumps({"event": "order.resolution_refused", "order_id": str(check.order_id),
                            "code": code, "why": why})
            )  # fmt: skip
        return ResolutionOutcome(accepted=code == "accepted", code=code, detail=why)

    # -- regular activities (venues, email) --

    @activity.defn(name="order.place")
    async def place(self, req: PlaceRequest) -> VenueOrder:
        """Place one leg at its venue, at most once per (order, attempt), ever.

        An order that may have been sent (a timeout or 5xx while sending, or any retry of this
        activity, which may follow a crash mid-send) is never sent again: the activity stops with
        `PlacementUnresolved` and the workflow asks the venue (`resolve_placement`, one lookup round
        per venue at a time: `activities/lookup_lanes.py`) until it shows the truth or ops resolve
        it. The lookups are not made here: a placement's own lookups used to queue behind every other
        unknown order's at a busy venue until the activity timed out. Only `VenueRefused` and
        `VenueUnavailable` (refused, or proven never sent) let the workflow use another venue.
        """
        adapter = self._adapters[req.leg.provider]
        cid = client_order_id(req.order_id, req.attempt)
        if activity.info().attempt > 1:
            raise _unresolved(req.leg.provider, "a retried placement is never sent again; looking it up")
        with application_errors(placing=True):
            try:
                order = await heartbeating(
                    adapter.place_order(
                        PlaceOrderRequest(
                            symbol=req.symbol,
                            side=req.side,
                            type=req.type,
                            amount=req.leg.amount,
                            price=req.price,
                            time_in_force=req.time_in_force,
                            client_order_id=cid,
                        )
                    )
                )
            except AmbiguousPlacement as e:
                raise _unresolved(req.leg.provider, "sent, no answer; looking it up") from e
            except (TerminalVenueError, RetryableVenueError):  # refused, or provably not sent
                self._router.record_failure(req.leg.provider)
                raise
        self._router.record_success(req.leg.provider)
        return order

    @activity.defn(name="order.resolve_placement")
    async def resolve_placement(self, req: ResolveRequest) -> PlacementLookup:
        """One round of resolving a placement whose outcome is unknown: the venue's order lookup by
        client order id, then its trade history since the send. Never sends anything.

        Returns the order if either shows it, with the worker's policy for the next round (back-off,
        and whether the unknown has outlasted `order_unknown_attention_after_s`). A lookup that
        fails is retried by Temporal: unknown is not absent.
        """
        adapter = self._adapters[req.provider]
        cid = client_order_id(req.order_id, req.attempt)
        since = req.unknown_since or activity.info().scheduled_time
        found = await heartbeating(self._lookup_round(adapter, req.symbol, cid, since))
        s = self._settings
        next_check = min(
            s.order_unknown_recheck_first_s * 2 ** min(req.checks, 30), s.order_unknown_recheck_max_s
        )
        overdue = (datetime.now(UTC) - since).total_seconds() >= s.order_unknown_attention_after_s
        if found is None and overdue:
            log.error(
                "OPS ALERT order %s: placement %s at %s still unknown after %.0f s (%d lookups); "
                "the hold is kept and the saga keeps asking",
                req.order_id, cid, req.provider, (datetime.now(UTC) - since).total_seconds(), req.checks + 1,
            )  # fmt: skip
        return PlacementLookup(
            order=found, next_check_s=next_check, needs_attention=found is None and overdue
        )

    async def _lookup_round(
        self, adapter: ExecutionAdapter, symbol: str, cid: str, since: datetime
    ) -> VenueOrder | None:
        """The order lookup, then the trade history, in this venue's lookup lane; None when neither
        shows the order or the lane gave no turn in time (both mean: still unknown, ask later)."""
        async with self._lanes.turn(adapter.name) as turn:
            if not turn:
                log.info("order lookup %s at %s waits for a later round: the venue's lane is busy",
                         cid, adapter.name)  # fmt: skip
                return None
            with application_errors():  # a lookup that fails is retried: unknown is not absent
                # One lookup a round: the saga's durable back-off is the retry (and keeps the lane short).
                found = await adapter.resolve_placement(symbol, cid, attempts=1)
                if found is None:
                    # Venue clocks and ours differ a little: search from a minute before the send.
                    found = await adapter.find_in_trades(symbol, cid, since - timedelta(seconds=60))
        return found

    @activity.defn(name="order.venue_status")
    async def venue_status(self, ref: VenueOrderRef) -> VenueOrder:
        with application_errors():
            status = await self._adapters[ref.provider].order_status(ref.symbol, ref.provider_order_id)
        return status

    @activity.defn(name="order.cancel_at_venue")
    async def cancel_at_venue(self, ref: VenueOrderRef) -> VenueOrder:
        """Cancel a resting order; returns its final state (fills up to the cancel included)."""
        adapter = self._adapters[ref.provider]
        with application_errors():
            try:
                await adapter.cancel_order(ref.symbol, ref.provider_order_id)
            except TerminalVenueError:
                pass  # already closed (filled or cancelled): its status below says which
            status = await adapter.order_status(ref.symbol, ref.provider_order_id)
        return status

    @activity.defn(name="order.notify")
    async def notify(self, req: NotifyRequest) -> None:
        """The customer's notification of the order's outcome (filled, partly filled, cancelled; and a
        large trade), to the outbox keyed by the order: a retry enqueues nothing new (issue 17)."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT user_id, side, symbol, amount, filled_amount, average_fill_price, "
                        "filled_quote_amount, status FROM orders WHERE id = :o"
                    ),
                    {"o": req.order_id},
                )
            ).first()
            if row is None:
                return
            await order_notices.outcome(conn, req.order_id, row)


__all__ = ["DEFAULT_MAX_SLIPPAGE", "ErrorType", "LedgerError", "OrderActivities", "OrderStatus", "Side"]

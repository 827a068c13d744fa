"""The order saga: quote, reserve, place, settle, roll back — exactly once, whatever fails.

Guarantees:
- One workflow per order (`order-<order id>`): a second start with the same id is refused by Temporal.
- Funds are reserved before anything reaches a venue, and every path that ends without a fill
  releases them; a partial fill settles what filled and releases the rest, in one transaction.
- A placement is sent at most once per (order, attempt), and never again once its outcome is unknown
  (a timeout, a 5xx, a crash mid-send): the saga asks the venue (order lookup by client order id and
  its trade history) with durable timers and back-off for as long as it takes. Past a bound set on the
  worker (`order_unknown_attention_after_s`) the order shows NEEDS_ATTENTION (search attribute, order
  row, ops alert) with its hold kept, and goes on asking, or takes ops' word (`resolve_placement`
  signal, or the `resolve_placement_checked` update the admin API uses). Ops' word counts only with a
  decision token signed for that ops user after a TOTP check, verified in an activity; a bare or
  forged one is refused and audited. Only a venue that refused, or provably never received the
  request (no connection), is replaced by the next best one; the hold caps what any fallback may pay
  (every placement is an IOC at the cap).
- A market order is placed as an IOC limit at a protective price, so slippage beyond the customer's
  limit is prevented at the venue, not detected afterwards.

Limit orders rest **at the venue** (GTC, or good-till-date enforced by our durable timer) and the
workflow checks them every `poll_interval_s` with a durable timer. We chose resting at the venue over
watching prices ourselves because the venue's matching is what fills it: a price we watched could be
gone by the time our order arrived. The hold stays reserved while the order rests; fills are settled
as they appear (maker rate), and a `cancel` signal cancels at the venue, then settles and releases.
Every `polls_per_run` checks a resting order continues as a new run carrying its reservation and venue
order, so an order resting for weeks never outgrows Temporal's history limits.

Short database steps run as local activities (no task round trip through the server); venue calls
and email are regular activities with their own retry policies.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import ErrorType, OrderActivities
    from models.market import (
        BestExecutionRecord,
        ExecutionLeg,
        OrderType,
        Side,
        TimeInForce,
        VenueOrder,
        VenueOrderStatus,
    )
    from models.order_flow import (
        CancelRequest,
        MarkRequest,
        NotifyRequest,
        OrderRequest,
        OrderState,
        OrderStatus,
        PlacementLookup,
        PlacementResolution,
        PlaceRequest,
        QuoteRequest,
        Reservation,
        ReserveRequest,
        ResolutionCheck,
        ResolutionOutcome,
        ResolveRequest,
        RestingOrder,
        SettleRequest,
        SettleResult,
        VenueOrderRef,
    )
    from providers.exchanges.ccxt_adapter import client_order_id
    from temporal import search_attributes as sa

LOCAL = timedelta(seconds=30)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    maximum_interval=timedelta(seconds=5),
    non_retryable_error_types=[ErrorType.REJECTED, ErrorType.NO_ROUTE, ErrorType.INSUFFICIENT_FUNDS],
)
PLACE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=300),
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=4,
    # A venue that refused, or was unavailable before taking the request, is replaced by the next best
    # at once; the activity itself is retried only after a timeout or a crash, when it may have sent.
    non_retryable_error_types=[ErrorType.VENUE_REFUSED, ErrorType.VENUE_UNAVAILABLE, ErrorType.UNRESOLVED],
)
# An unknown placement still unresolved after this much history is asked about hourly, so the wait
# can last months within Temporal's history limits (each round adds about ten events).
LONG_HISTORY_EVENTS = 10_000
LONG_UNKNOWN_RECHECK = timedelta(hours=1)
# The only placement failures after which another venue may be tried: the venue refused, or the
# request provably never reached it. Any other failure leaves the outcome unknown.
FALLBACK_ERRORS = (ErrorType.VENUE_REFUSED, ErrorType.VENUE_UNAVAILABLE, ErrorType.NOT_RECEIVED)
# A worker that dies while placing is noticed this fast; the retry then asks the venue first.
PLACE_HEARTBEAT = timedelta(seconds=4)
VENUE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30))
MAX_FALLBACKS = 3
# An order id is used once, ever: a second start, even after the first finished, is refused.
ID_REUSE_POLICY = WorkflowIDReusePolicy.REJECT_DUPLICATE


# Histories from before resolutions needed proof took a signal as it came; the patch keeps them replayable.
RESOLUTION_PROOF_PATCH = "placement-resolution-proof"

# What the customer and the order row read while a placement is unresolved (no venue text).
ATTENTION_REASON = (
    "the venue has not yet confirmed the order; it is being checked and the funds stay reserved"
)


def workflow_id(order_id: object) -> str:
    return f"order-{order_id}"


# A failed regular activity arrives as ActivityError(cause=ApplicationError); a failed local activity
# arrives as the ApplicationError itself.
ACTIVITY_FAILURES = (ActivityError, ApplicationError)


def _error_type(e: BaseException) -> str | None:
    cause = e.cause if isinstance(e, ActivityError) else e
    return cause.type if isinstance(cause, ApplicationError) else None


def _error_message(e: BaseException) -> str:
    cause = e.cause if isinstance(e, ActivityError) else e
    return cause.message if isinstance(cause, ApplicationError) else str(cause)


@workflow.defn
class OrderWorkflow:
    """One customer order, from validation to settlement."""

    def __init__(self) -> None:
        self._state: OrderState | None = None
        self._cancel: CancelRequest | None = None
        self._resolution: PlacementResolution | None = None
        # The attempt whose unknown placement waits for ops' word (None: none is waiting).
        self._awaiting_attempt: int | None = None
        self._proofs_used: set[str] = set()

    @workflow.query
    def state(self) -> OrderState:
        assert self._state is not None
        return self._state

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """Cancel: before placement the hold is released; a resting limit order is cancelled at the venue."""
        self._cancel = request
        if self._state is not None:
            self._state.cancel_requested = True

    @workflow.signal
    async def resolve_placement(self, resolution: PlacementResolution) -> None:
        """Ops' word on a placement whose outcome the venue has not shown (see PlacementResolution):
        what `temporal workflow signal --name resolve_placement` sends, with a token from
        `python -m cli approval-token`. It counts only once its proof is verified."""
        await self._consider_resolution(resolution)

    @workflow.update(name="resolve_placement_checked")
    async def resolve_placement_checked(self, resolution: PlacementResolution) -> ResolutionOutcome:
        """The same as the signal, answering whether it counted (the admin API's path)."""
        return await self._consider_resolution(resolution)

    async def _consider_resolution(self, resolution: PlacementResolution) -> ResolutionOutcome:
        if not workflow.patched(RESOLUTION_PROOF_PATCH):
            self._resolution = resolution  # replaying a history from before proofs: as it ran then
            return ResolutionOutcome(accepted=True, code="accepted")
        attempt = self._awaiting_attempt
        outcome: ResolutionOutcome = await self._local(
            OrderActivities.verify_resolution,
            ResolutionCheck(
                order_id=(
                    self._state.order_id
                    if self._state is not None
                    else uuid.UUID(workflow.info().workflow_id.removeprefix("order-"))
                ),
                attempt=attempt,
                resolution=resolution,
                reused=bool(resolution.token) and resolution.token in self._proofs_used,
            ),
        )
        if not outcome.accepted:
            return outcome
        if self._awaiting_attempt is None or self._awaiting_attempt != attempt:
            # The venue showed the order while the proof was being checked: nothing left to resolve.
            return ResolutionOutcome(accepted=False, code="not_waiting", detail="resolved meanwhile")
        self._proofs_used.add(resolution.token)
        self._resolution = resolution
        return outcome

    @workflow.run
    async def run(self, req: OrderRequest) -> OrderState:
        self._state = OrderState(order_id=req.order_id, cancel_requested=self._cancel is not None)
        workflow.upsert_search_attributes(
            [
                sa.CUSTOMER_ID.value_set(str(req.user_id)),
                sa.SYMBOL.value_set(req.symbol),
                sa.SIDE.value_set(req.side.value),
                sa.ORDER_STATUS.value_set(OrderStatus.PENDING.value),
            ]
        )
        if req.resume is not None:
            # A resting limit order's next run: placed and reserved already, keep watching it.
            self._state.status = OrderStatus.OPEN
            self._state.attempts = req.resume.attempts
            self._state.providers = list(req.resume.providers)
            self._state.provider_order_ids = list(req.resume.provider_order_ids)
            return await self._rest(req, req.resume.reservation, req.resume.venue_order)
        try:
            await self._local(OrderActivities.accept, req)
        except ACTIVITY_FAILURES as e:
            return await self._finish(req, OrderStatus.REJECTED, _error_message(e))

        try:
            record = await self._local(OrderActivities.quote, QuoteRequest(order=req))
        except ACTIVITY_FAILURES as e:
            return await self._finish(req, OrderStatus.REJECTED, _error_message(e), record=_record_of(e))
        if self._cancel is not None:
            return await self._finish(req, OrderStatus.CANCELLED, self._cancel.reason, record=record)

        try:
            reservation = await self._local(OrderActivities.reserve, ReserveRequest(order=req, record=record))
        except ACTIVITY_FAILURES as e:
            return await self._finish(req, OrderStatus.REJECTED, _error_message(e), record=record)
        workflow.upsert_search_attributes(
            [
                sa.NOTIONAL_GBP.value_set(float(reservation.notional_gbp)),
                sa.ORDER_STATUS.value_set(OrderStatus.ROUTED.value),
            ]
        )
        self._set(OrderStatus.ROUTED)
        if self._cancel is not None:
            return await self._finish(req, OrderStatus.CANCELLED, self._cancel.reason, hold=reservation)

        if req.type is OrderType.MARKET:
            return await self._market(req, record, reservation)
        return await self._limit(req, record, reservation)

    # -- market orders --

    async def _market(self, req: OrderRequest, record: BestExecutionRecord, res: Reservation) -> OrderState:
        venue_orders: list[VenueOrder] = []
        failures: list[str] = []
        for leg in record.legs:
            placed = await self._place_with_fallback(req, leg, res, failures)
            if placed is not None:
                venue_orders.append(placed)
        if not venue_orders:
            why = "no venue accepted the order: " + "; ".join(failures)
            return await self._finish(req, OrderStatus.FAILED, why, hold=res)
        filled = sum((v.filled for v in venue_orders), Decimal(0))
        # What the venues were asked for after rounding to their lot size (dust below a step is never sent).
        asked = sum((v.amount for v in venue_orders), Decimal(0))
        # An amount order's remainder below a venue's lot step was never sent: say so, never "FILLED".
        unplaced = sum((v.unplaced_amount for v in venue_orders), Decimal(0)) if req.amount else Decimal(0)
        reason: str | None
        if filled <= 0:
            status = OrderStatus.CANCELLED
            reason = "nothing filled within the protective price (IOC)"
        elif filled < asked:
            status, reason = OrderStatus.PARTIALLY_FILLED, "filled in part within the protective price"
        elif unplaced > 0:
            status = OrderStatus.PARTIALLY_FILLED
            reason = f"{unplaced.normalize():f} was not sent: finer than the venue's lot step"
        else:
            status, reason = OrderStatus.FILLED, None
        result = await self._settle(req, res, venue_orders, final=True, status=status, reason=reason)
        return await self._done(req, result)

    async def _place_with_fallback(
        self, req: OrderRequest, leg: ExecutionLeg, res: Reservation, failures: list[str]
    ) -> VenueOrder | None:
        excluded: list[str] = []
        for _ in range(MAX_FALLBACKS + 1):
            assert self._state is not None
            self._state.attempts += 1
            attempt = self._state.attempts
            # The protective price is the customer's tolerance (reference +/- max slippage), not the
            # deepest level we saw: books move between quote and placement, and within the tolerance
            # a fill is what the customer asked for. Beyond it, the IOC simply does not fill.
            request = PlaceRequest(
                order_id=req.order_id,
                attempt=attempt,
                symbol=req.symbol,
                side=req.side,
                type=req.type,
                leg=leg,
                price=res.price_cap,
                time_in_force=TimeInForce.IOC,
            )
            try:
                # Raises only when the venue refused or never received the order (see `_place`).
                order = await self._place(req, request)
            except ACTIVITY_FAILURES as e:
                failures.append(f"{leg.provider}: {_error_message(e)}")
                excluded.append(leg.provider)
                try:
                    fallback = await self._local(
                        OrderActivities.quote, QuoteRequest(order=req, amount=leg.amount, exclude=excluded)
                    )
                except ACTIVITY_FAILURES as e2:
                    failures.append(f"fallback: {_error_message(e2)}")
                    return None
                if not fallback.legs:
                    return None
                leg = fallback.legs[0]
                continue
            self._state.providers.append(order.provider)
            self._state.provider_order_ids.append(order.provider_order_id)
            return order
        return None

    async def _place(self, req: OrderRequest, request: PlaceRequest) -> VenueOrder:
        """Place, and when the outcome is unknown, find out: never send again, never go elsewhere.

        Raises only a failure in `FALLBACK_ERRORS` (refused, or provably never received). Every other
        outcome (accepted; or a timeout, a 5xx, a crash, a lookup that does not show the order yet)
        ends with the venue's order, however long the venue takes to show it.
        """
        unknown_since = workflow.now()
        try:
            return await self._place_once(request)
        except ACTIVITY_FAILURES as e:
            if _error_type(e) in FALLBACK_ERRORS:
                raise
        return await self._resolve_unknown(req, request, unknown_since)

    async def _resolve_unknown(self, req: OrderRequest, request: PlaceRequest, since: datetime) -> VenueOrder:
        """Ask the venue (order lookup and trade history) on durable timers with back-off until it
        shows the order; past the worker's bound flag NEEDS_ATTENTION and keep asking. An ops
        resolution (signal) ends the wait early: the venue order ops found, or proof it is absent."""
        lookup = ResolveRequest(
            order_id=request.order_id,
            attempt=request.attempt,
            provider=request.leg.provider,
            symbol=request.symbol,
            unknown_since=since,
        )
        self._resolution = None
        self._awaiting_attempt = request.attempt
        try:
            return await self._ask_until_known(req, request, lookup)
        finally:
            self._awaiting_attempt = None
            self._resolution = None

    async def _ask_until_known(
        self, req: OrderRequest, request: PlaceRequest, lookup: ResolveRequest
    ) -> VenueOrder:
        flagged = False
        checks = 0
        while True:
            result: PlacementLookup = await workflow.execute_activity_method(
                OrderActivities.resolve_placement,
                lookup.model_copy(update={"checks": checks}),
                start_to_close_timeout=timedelta(seconds=60),
                heartbeat_timeout=PLACE_HEARTBEAT,
                retry_policy=VENUE_RETRY,  # unknown is not absent: keep asking until the venue answers
            )
            checks += 1
            found = result.order
            if found is None and result.needs_attention and not flagged:
                flagged = True
                await self._mark_attention(req, OrderStatus.NEEDS_ATTENTION, ATTENTION_REASON)
            if found is None:
                wait = result.next_check_s
                if workflow.info().get_current_history_length() > LONG_HISTORY_EVENTS:
                    wait = max(wait, LONG_UNKNOWN_RECHECK.total_seconds())
                try:
                    await workflow.wait_condition(
                        lambda: self._resolution is not None, timeout=timedelta(seconds=wait)
                    )
                except TimeoutError:
                    continue
                resolution, self._resolution = self._resolution, None
                assert resolution is not None
                workflow.logger.warning(
                    "order %s: ops resolution of placement %s by %s: %s",
                    req.order_id, request.attempt, resolution.staff_id or resolution.resolved_by,
                    resolution.model_dump(exclude={"token"}),
                )  # fmt: skip
                if resolution.provider_order_id:
                    found = await self._venue_order_named_by_ops(req, request, resolution.provider_order_id)
                    if found is None:
                        continue
                elif resolution.absent:
                    # One more look first: an order the venue does show outweighs anyone's word.
                    last: PlacementLookup = await workflow.execute_activity_method(
                        OrderActivities.resolve_placement,
                        lookup.model_copy(update={"checks": checks}),
                        start_to_close_timeout=timedelta(seconds=60),
                        heartbeat_timeout=PLACE_HEARTBEAT,
                        retry_policy=VENUE_RETRY,
                    )
                    if last.order is None:
                        raise ApplicationError(
                            f"{request.leg.provider}: ops established the venue never received the order"
                            + (f" ({resolution.note})" if resolution.note else ""),
                            type=ErrorType.NOT_RECEIVED,
                            non_retryable=True,
                        )
                    found = last.order
                else:
                    continue
            if flagged:
                await self._mark_attention(req, OrderStatus.ROUTED, None)
            return found

    async def _venue_order_named_by_ops(
        self, req: OrderRequest, request: PlaceRequest, provider_order_id: str
    ) -> VenueOrder | None:
        """The venue order ops named, if the venue shows it and it is this placement's; else None (the
        saga goes on asking). A few tries only: a mistyped id must not stop the regular lookups."""
        ref = VenueOrderRef(
            provider=request.leg.provider, symbol=request.symbol, provider_order_id=provider_order_id
        )
        try:
            named: VenueOrder = await workflow.execute_activity_method(
                OrderActivities.venue_status,
                ref,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=5),
            )
        except ACTIVITY_FAILURES as e:
            workflow.logger.error(
                "order %s: venue order %s named by ops could not be read (%s); still waiting",
                req.order_id, provider_order_id, _error_message(e),
            )  # fmt: skip
            return None
        if named.client_order_id != client_order_id(request.order_id, request.attempt):
            workflow.logger.error(
                "order %s: ops named venue order %s, not this placement's; still waiting",
                req.order_id, provider_order_id,
            )  # fmt: skip
            return None
        return named

    async def _mark_attention(self, req: OrderRequest, status: OrderStatus, reason: str | None) -> None:
        """Show (or clear) NEEDS_ATTENTION on the order row, the search attribute and the query."""
        await self._local(
            OrderActivities.mark, MarkRequest(order_id=req.order_id, status=status, reason=reason)
        )
        workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set(status.value)])
        self._set(status, reason)
        if reason is None:
            assert self._state is not None
            self._state.reason = None

    async def _place_once(self, request: PlaceRequest) -> VenueOrder:
        order: VenueOrder = await workflow.execute_activity_method(
            OrderActivities.place,
            request,
            start_to_close_timeout=timedelta(seconds=60),
            heartbeat_timeout=PLACE_HEARTBEAT,
            retry_policy=PLACE_RETRY,
        )
        return order

    # -- limit orders --

    async def _limit(self, req: OrderRequest, record: BestExecutionRecord, res: Reservation) -> OrderState:
        assert req.price is not None and req.amount is not None
        leg = record.legs[0].model_copy(update={"amount": req.amount})
        assert self._state is not None
        self._state.attempts += 1
        try:
            order = await self._place(
                req,
                PlaceRequest(
                    order_id=req.order_id,
                    attempt=self._state.attempts,
                    symbol=req.symbol,
                    side=req.side,
                    type=OrderType.LIMIT,
                    leg=leg,
                    price=req.price,
                    time_in_force=TimeInForce.GTC,
                ),
            )
        except ACTIVITY_FAILURES as e:
            return await self._finish(req, OrderStatus.FAILED, _error_message(e), hold=res)
        self._state.providers.append(order.provider)
        self._state.provider_order_ids.append(order.provider_order_id)
        # What filled at placement took liquidity (taker); what fills while resting made it (maker).
        await self._settle(req, res, [order], final=False, status=OrderStatus.OPEN)
        return await self._rest(req, res, order)

    async def _rest(self, req: OrderRequest, res: Reservation, order: VenueOrder) -> OrderState:
        """Watch a resting order until it fills, is cancelled, expires, or the venue closes it."""
        assert self._state is not None
        ref = VenueOrderRef(
            provider=order.provider, symbol=req.symbol, provider_order_id=order.provider_order_id
        )
        polls = 0
        if order.status in (VenueOrderStatus.OPEN, VenueOrderStatus.PARTIALLY_FILLED):
            workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set(OrderStatus.OPEN.value)])
        while order.status in (VenueOrderStatus.OPEN, VenueOrderStatus.PARTIALLY_FILLED):
            if polls >= req.polls_per_run and self._cancel is None:
                resting = RestingOrder(
                    reservation=res,
                    venue_order=order,
                    attempts=self._state.attempts,
                    providers=self._state.providers,
                    provider_order_ids=self._state.provider_order_ids,
                )
                workflow.continue_as_new(req.model_copy(update={"resume": resting}))
            polls += 1
            timeout = timedelta(seconds=req.poll_interval_s)
            expired = False
            if req.expires_at is not None:
                left = req.expires_at - workflow.now()
                if left <= timedelta(0):
                    expired = True
                else:
                    timeout = min(timeout, left)
            if not expired:
                try:
                    await workflow.wait_condition(lambda: self._cancel is not None, timeout=timeout)
                except TimeoutError:
                    pass
            if (
                self._cancel is not None
                or expired
                or (req.expires_at is not None and workflow.now() >= req.expires_at)
            ):
                order = await self._venue(OrderActivities.cancel_at_venue, ref)
                final = OrderStatus.CANCELLED if self._cancel is not None else OrderStatus.EXPIRED
                reason: str | None = (
                    self._cancel.reason if self._cancel is not None else "good-till-date reached"
                )
                if order.status is VenueOrderStatus.FILLED:
                    final, reason = OrderStatus.FILLED, None
                result = await self._settle(
                    req, res, [order], final=True, status=final, reason=reason, maker=True
                )
                return await self._done(req, result)
            order = await self._venue(OrderActivities.venue_status, ref)
            if order.status in (VenueOrderStatus.OPEN, VenueOrderStatus.PARTIALLY_FILLED):
                await self._settle(req, res, [order], final=False, status=OrderStatus.OPEN, maker=True)
        final = OrderStatus.FILLED if order.status is VenueOrderStatus.FILLED else OrderStatus.CANCELLED
        closing: str | None = (
            None if final is OrderStatus.FILLED else f"the venue closed the order ({order.status.value})"
        )
        result = await self._settle(req, res, [order], final=True, status=final, reason=closing, maker=True)
        return await self._done(req, result)

    # -- helpers --

    async def _local(self, method: Any, arg: Any) -> Any:
        return await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=LOCAL, retry_policy=LOCAL_RETRY
        )

    async def _venue(self, method: Any, ref: VenueOrderRef) -> VenueOrder:
        result: VenueOrder = await workflow.execute_activity_method(
            method, ref, start_to_close_timeout=timedelta(seconds=30), retry_policy=VENUE_RETRY
        )
        return result

    async def _settle(
        self,
        req: OrderRequest,
        res: Reservation,
        venue_orders: list[VenueOrder],
        *,
        final: bool,
        status: OrderStatus,
        reason: str | None = None,
        maker: bool = False,
    ) -> SettleResult:
        result: SettleResult = await self._local(
            OrderActivities.settle,
            SettleRequest(
                order_id=req.order_id,
                user_id=req.user_id,
                symbol=req.symbol,
                side=req.side,
                reservation=res,
                venue_orders=venue_orders,
                maker=maker,
                final=final,
                status=status,
                reason=reason,
            ),
        )
        assert self._state is not None
        self._state.filled_amount = result.filled_amount
        self._state.filled_quote = result.filled_quote
        self._state.average_price = result.average_price
        self._state.fee = result.fee
        self._set(result.status, reason)
        return result

    async def _done(self, req: OrderRequest, result: SettleResult) -> OrderState:
        workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set(result.status.value)])
        if result.filled_amount > 0:
            try:
                await workflow.execute_activity_method(
                    OrderActivities.notify,
                    NotifyRequest(order_id=req.order_id),
                    start_to_close_timeout=timedelta(seconds=20),
                    retry_policy=RetryPolicy(maximum_attempts=3),
                )
            except ACTIVITY_FAILURES:
                workflow.logger.warning("order %s: the fill email could not be sent", req.order_id)
        assert self._state is not None
        return self._state

    async def _finish(
        self,
        req: OrderRequest,
        status: OrderStatus,
        reason: str | None,
        *,
        hold: Reservation | None = None,
        record: BestExecutionRecord | None = None,
    ) -> OrderState:
        await self._local(
            OrderActivities.mark,
            MarkRequest(
                order_id=req.order_id,
                status=status,
                reason=reason,
                hold_id=hold.hold_id if hold else None,
                record=record,
            ),
        )
        self._set(status, reason)
        workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set(status.value)])
        assert self._state is not None
        return self._state

    def _set(self, status: OrderStatus, reason: str | None = None) -> None:
        assert self._state is not None
        self._state.status = status
        if reason is not None:
            self._state.reason = reason


def _record_of(e: BaseException) -> BestExecutionRecord | None:
    cause = e.cause if isinstance(e, ActivityError) else e
    if isinstance(cause, ApplicationError) and cause.type == ErrorType.NO_ROUTE and len(cause.details) >= 2:
        try:
            return BestExecutionRecord.model_validate(cause.details[1])
        except Exception:  # a record we cannot read back is only diagnostics
            return None
    return None


__all__ = ["OrderWorkflow", "Side"]

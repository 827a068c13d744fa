"""The order saga: quote, reserve, place, settle, roll back — exactly once, whatever fails.

Guarantees:
- One workflow per order (`order-<order id>`): a second start with the same id is refused by Temporal.
- Funds are reserved before anything reaches a venue, and every path that ends without a fill
  releases them; a partial fill settles what filled and releases the rest, in one transaction.
- A placement is sent at most once per (order, attempt), and never again once its outcome is unknown:
  the saga asks the venue until it shows the order, or takes ops' proven word, with the hold kept
  (workflows/order_placement.py). Only a venue that refused, or provably never received the request,
  is replaced by the next best one; the hold caps what any fallback may pay (every placement is an
  IOC at the cap).
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
and email are regular activities with their own retry policies (workflows/order_policies.py).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.aml import AmlActivities
    from activities.orders import OrderActivities
    from models.aml import AmlSubjectType, ScreenRequest
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
        PlacementResolution,
        PlaceRequest,
        QuoteRequest,
        Reservation,
        ReserveRequest,
        ResolutionOutcome,
        RestingOrder,
        SettleRequest,
        SettleResult,
        VenueOrderRef,
    )
    from temporal import search_attributes as sa

    # The saga's own helpers, passed through too: deterministic, no module state (they use `workflow.*`
    # for time and randomness), and the sandbox would otherwise execute them again for every order
    # (`make bench BENCH=orders` measured the per-run re-import at about a tenth of an order's CPU).
    from workflows import order_policies as policy
    from workflows.order_placement import OrderPlacement
    from workflows.order_policies import ACTIVITY_FAILURES, ID_REUSE_POLICY, workflow_id


@workflow.defn
class OrderWorkflow(OrderPlacement):
    """One customer order, from validation to settlement."""

    @workflow.init
    def __init__(self, req: OrderRequest) -> None:
        # Exists before any signal, update or query is handled (a cancel may arrive before `run`).
        self._state = OrderState(order_id=req.order_id)
        self._cancel: CancelRequest | None = None
        self._resolution: PlacementResolution | None = None
        # The attempt whose unknown placement waits for ops' word (None: none is waiting).
        self._awaiting_attempt: int | None = None
        self._proofs_used: set[str] = set()

    @workflow.query
    def state(self) -> OrderState:
        return self._state

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """Cancel: before placement the hold is released; a resting limit order is cancelled at the venue."""
        self._cancel = request
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

    @workflow.run
    async def run(self, req: OrderRequest) -> OrderState:
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
            return await self._finish(req, OrderStatus.REJECTED, policy.error_message(e))

        try:
            record = await self._local(OrderActivities.quote, QuoteRequest(order=req))
        except ACTIVITY_FAILURES as e:
            return await self._finish(
                req, OrderStatus.REJECTED, policy.error_message(e), record=policy.record_of(e)
            )
        if self._cancel is not None:
            return await self._finish(req, OrderStatus.CANCELLED, self._cancel.reason, record=record)

        try:
            reservation = await self._local(OrderActivities.reserve, ReserveRequest(order=req, record=record))
        except ACTIVITY_FAILURES as e:
            return await self._finish(req, OrderStatus.REJECTED, policy.error_message(e), record=record)
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
        for _ in range(policy.MAX_FALLBACKS + 1):
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
                failures.append(f"{leg.provider}: {policy.error_message(e)}")
                excluded.append(leg.provider)
                try:
                    fallback = await self._local(
                        OrderActivities.quote, QuoteRequest(order=req, amount=leg.amount, exclude=excluded)
                    )
                except ACTIVITY_FAILURES as e2:
                    failures.append(f"fallback: {policy.error_message(e2)}")
                    return None
                if not fallback.legs:
                    return None
                leg = fallback.legs[0]
                continue
            self._state.providers.append(order.provider)
            self._state.provider_order_ids.append(order.provider_order_id)
            return order
        return None

    # -- limit orders --

    async def _limit(self, req: OrderRequest, record: BestExecutionRecord, res: Reservation) -> OrderState:
        assert req.price is not None and req.amount is not None
        leg = record.legs[0].model_copy(update={"amount": req.amount})
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
            return await self._finish(req, OrderStatus.FAILED, policy.error_message(e), hold=res)
        self._state.providers.append(order.provider)
        self._state.provider_order_ids.append(order.provider_order_id)
        # What filled at placement took liquidity (taker); what fills while resting made it (maker).
        await self._settle(req, res, [order], final=False, status=OrderStatus.OPEN)
        return await self._rest(req, res, order)

    async def _rest(self, req: OrderRequest, res: Reservation, order: VenueOrder) -> OrderState:
        """Watch a resting order until it fills, is cancelled, expires, or the venue closes it."""
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

    async def _venue(self, method: Any, ref: VenueOrderRef) -> VenueOrder:
        result: VenueOrder = await workflow.execute_activity_method(
            method, ref, start_to_close_timeout=policy.VENUE_TIMEOUT, retry_policy=policy.VENUE_RETRY
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
        self._state.filled_amount = result.filled_amount
        self._state.filled_quote = result.filled_quote
        self._state.average_price = result.average_price
        self._state.fee = result.fee
        self._set(result.status, reason)
        return result

    async def _done(self, req: OrderRequest, result: SettleResult) -> OrderState:
        workflow.upsert_search_attributes([sa.ORDER_STATUS.value_set(result.status.value)])
        # Unfilled orders are told too (cancelled) since issue 17; older histories did not ask.
        if result.filled_amount > 0 or workflow.patched("notify-unfilled-orders"):
            try:
                await workflow.execute_activity_method(
                    OrderActivities.notify,
                    NotifyRequest(order_id=req.order_id),
                    start_to_close_timeout=policy.NOTIFY_TIMEOUT,
                    retry_policy=policy.NOTIFY_RETRY,
                )
            except ACTIVITY_FAILURES:
                workflow.logger.warning("order %s: the fill email could not be sent", req.order_id)
            if workflow.patched("aml-screen-trade"):
                await self._aml_screen(req)
        return self._state

    async def _aml_screen(self, req: OrderRequest) -> None:
        """AML monitoring after the trades settled: alerts for compliance only, never a change to the
        order (a local activity: no extra round trip). A screening that keeps failing is logged; the
        scheduled sweep applies the window rules to the customer anyway."""
        try:
            await workflow.execute_local_activity_method(
                AmlActivities.screen_trade,
                ScreenRequest(subject_type=AmlSubjectType.TRADE, subject_id=str(req.order_id)),
                start_to_close_timeout=policy.LOCAL,
                retry_policy=policy.AML_SCREEN_RETRY,
            )
        except ACTIVITY_FAILURES:
            workflow.logger.error("OPS ALERT order %s: trades not screened by AML monitoring", req.order_id)

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
        return self._state


__all__ = ["ID_REUSE_POLICY", "OrderWorkflow", "Side", "workflow_id"]

"""Placing one order at one venue exactly once: the order saga's most careful step.

`OrderWorkflow` (workflows/orders.py) inherits these steps. A placement is sent at most once per
(order, attempt), and never again once its outcome is unknown (a timeout, a 5xx, a crash mid-send):
the saga asks the venue (order lookup by client order id, and its trade history) with durable timers
and back-off for as long as it takes. Past a bound set on the worker (`order_unknown_attention_after_s`)
the order shows NEEDS_ATTENTION (search attribute, order row, ops alert) with its hold kept, and goes on
asking, or takes ops' word (`resolve_placement` signal, or the `resolve_placement_checked` update the
admin API uses). Ops' word counts only with a decision token signed for that ops user after a TOTP
check, verified in an activity; a bare or forged one is refused and audited. Only a venue that
refused, or provably never received the request (no connection), may be replaced by another.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.orders import ErrorType, OrderActivities
    from models.market import VenueOrder
    from models.order_flow import (
        MarkRequest,
        OrderRequest,
        OrderState,
        OrderStatus,
        PlacementLookup,
        PlacementResolution,
        PlaceRequest,
        ResolutionCheck,
        ResolutionOutcome,
        ResolveRequest,
        VenueOrderRef,
    )
    from providers.exchanges.ccxt_adapter import client_order_id
    from temporal import search_attributes as sa

from workflows import order_policies as policy
from workflows.order_policies import ACTIVITY_FAILURES


class OrderPlacement:
    """The placement steps of the order saga, and the two helpers every step of it uses."""

    _state: OrderState
    # Ops' proven word on the placement that waits for it, and which attempt waits (None: none).
    _resolution: PlacementResolution | None
    _awaiting_attempt: int | None
    _proofs_used: set[str]

    async def _local(self, method: Any, arg: Any) -> Any:
        return await workflow.execute_local_activity_method(
            method, arg, start_to_close_timeout=policy.LOCAL, retry_policy=policy.LOCAL_RETRY
        )

    def _set(self, status: OrderStatus, reason: str | None = None) -> None:
        self._state.status = status
        if reason is not None:
            self._state.reason = reason

    async def _consider_resolution(self, resolution: PlacementResolution) -> ResolutionOutcome:
        """Ops' word on the placement waiting for it, counted once its token is verified (once each)."""
        if not workflow.patched(policy.RESOLUTION_PROOF_PATCH):
            self._resolution = resolution  # replaying a history from before proofs: as it ran then
            return ResolutionOutcome(accepted=True, code="accepted")
        attempt = self._awaiting_attempt
        outcome: ResolutionOutcome = await self._local(
            OrderActivities.verify_resolution,
            ResolutionCheck(
                order_id=self._state.order_id,
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
            if policy.error_type(e) in policy.FALLBACK_ERRORS:
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
            result = await self._look_up(lookup, checks)
            checks += 1
            found = result.order
            if found is None and result.needs_attention and not flagged:
                flagged = True
                await self._mark_attention(req, OrderStatus.NEEDS_ATTENTION, policy.ATTENTION_REASON)
            if found is None:
                wait = result.next_check_s
                if workflow.info().get_current_history_length() > policy.LONG_HISTORY_EVENTS:
                    wait = max(wait, policy.LONG_UNKNOWN_RECHECK.total_seconds())
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
                    last = await self._look_up(lookup, checks)
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

    async def _look_up(self, lookup: ResolveRequest, checks: int) -> PlacementLookup:
        """Ask the venue for the placement (order lookup and trade history), `checks` asked before."""
        result: PlacementLookup = await workflow.execute_activity_method(
            OrderActivities.resolve_placement,
            lookup.model_copy(update={"checks": checks}),
            start_to_close_timeout=policy.PLACE_TIMEOUT,
            heartbeat_timeout=policy.PLACE_HEARTBEAT,
            retry_policy=policy.VENUE_RETRY,  # unknown is not absent: keep asking until the venue answers
        )
        return result

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
                start_to_close_timeout=policy.VENUE_TIMEOUT,
                retry_policy=policy.NAMED_ORDER_RETRY,
            )
        except ACTIVITY_FAILURES as e:
            workflow.logger.error(
                "order %s: venue order %s named by ops could not be read (%s); still waiting",
                req.order_id, provider_order_id, policy.error_message(e),
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
            self._state.reason = None

    async def _place_once(self, request: PlaceRequest) -> VenueOrder:
        order: VenueOrder = await workflow.execute_activity_method(
            OrderActivities.place,
            request,
            start_to_close_timeout=policy.PLACE_TIMEOUT,
            heartbeat_timeout=policy.PLACE_HEARTBEAT,
            retry_policy=policy.PLACE_RETRY,
        )
        return order

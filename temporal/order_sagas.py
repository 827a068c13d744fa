"""The order saga as the API's order intake sees it (`services.orders.intake.OrderSagas`), over Temporal.

Start, look up and cancel `OrderWorkflow` by the order's business id (`order-<uuid>`), so a duplicate start
is refused by Temporal itself and counts as already started.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from models.order_flow import CancelRequest, OrderRequest, OrderStatus
from services.orders.intake import SagaUnreachable
from temporal import search_attributes as sa
from workflows.orders import ID_REUSE_POLICY, OrderWorkflow, workflow_id


class TemporalOrderSagas:
    """`OrderSagas` on a Temporal client and the orders task queue."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def start(self, req: OrderRequest, *, notional_gbp: Decimal) -> None:
        try:
            await self._client.start_workflow(
                OrderWorkflow.run,
                req,
                id=workflow_id(req.order_id),
                task_queue=self._task_queue,
                id_reuse_policy=ID_REUSE_POLICY,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(sa.CUSTOMER_ID, str(req.user_id)),
                        SearchAttributePair(sa.SYMBOL, req.symbol),
                        SearchAttributePair(sa.SIDE, req.side.value),
                        SearchAttributePair(sa.ORDER_STATUS, OrderStatus.PENDING.value),
                        SearchAttributePair(sa.NOTIONAL_GBP, float(notional_gbp)),
                    ]
                ),
            )
        except WorkflowAlreadyStartedError:
            pass  # a retry of the same (customer, key, request) after a crash: it is already under way

    async def exists(self, order_id: uuid.UUID) -> bool | None:
        try:
            await self._client.get_workflow_handle(workflow_id(order_id)).describe()
            return True
        except RPCError as e:
            return False if e.status is RPCStatusCode.NOT_FOUND else None
        except Exception:
            return None

    async def cancel(self, order_id: uuid.UUID, request: CancelRequest) -> bool:
        try:
            await self._client.get_workflow_handle(workflow_id(order_id)).signal(
                OrderWorkflow.cancel, request
            )
        except RPCError as e:
            if e.status is RPCStatusCode.NOT_FOUND:  # the saga finished after the row was read
                return False
            raise SagaUnreachable("the cancellation could not be sent; retry") from e
        return True

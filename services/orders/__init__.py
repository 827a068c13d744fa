"""Order domain logic (docs: docs/architecture.md §4, §C.6), one module per concept; this package re-exports
them so
`from services import orders` keeps working.

- `errors`: why an order is refused (`OrderRejected`, a `DomainError`) and `FillConflict`;
- `validation`: shape and size checks that need no database (`validate`, `SIZE_RULES`);
- `limits`: the rolling 24 h trading limit per KYC tier;
- `prices`, `sizing`: protective prices, the hold an order needs, sizing a quote budget;
- `settlement`: the ledger legs a fill books (the settlement rules are written out there);
- `store`: the saga's database steps on orders, fills and trades;
- `views`: the customer's reads of their orders (`OrderOut`, pages, the best-execution record);
- `intake`: `POST /orders` from request to started saga (idempotency, second factor, compensation).

No Temporal and no HTTP here; the order activities call these functions, and the API uses the same
validation so a bad order is refused before a workflow starts.
"""

from __future__ import annotations

from models.order_flow import OrderRequest, OrderStatus, Reservation
from services.orders.errors import FillConflict, OrderRejected
from services.orders.limits import (
    COUNTED_STATUSES,
    MAX_ORDER_GBP,
    TRADING_LIMITS_GBP,
    check_trading_limit,
    lock_customer,
    refuse_over_limit,
    trading_used,
)
from services.orders.prices import PRICE_PLACES, ZERO, protective_price
from services.orders.settlement import (
    DUST_QUANTA,
    Increment,
    fit_to_hold,
    is_dust,
    settlement_legs,
    settlement_posting,
)
from services.orders.sizing import funds_needed, plan_reservation, size_quote_budget
from services.orders.store import (
    add_staff_detail,
    clear_attention,
    increments_since_last,
    insert_order,
    mark_routed,
    record_trades,
    refresh_totals,
    set_status,
)
from services.orders.validation import SIZE_RULES, SizeRules, fill_value, validate, value_floor

__all__ = [
    "COUNTED_STATUSES",
    "DUST_QUANTA",
    "MAX_ORDER_GBP",
    "PRICE_PLACES",
    "SIZE_RULES",
    "TRADING_LIMITS_GBP",
    "ZERO",
    "FillConflict",
    "Increment",
    "OrderRejected",
    "OrderRequest",
    "OrderStatus",
    "Reservation",
    "SizeRules",
    "add_staff_detail",
    "check_trading_limit",
    "lock_customer",
    "clear_attention",
    "fill_value",
    "fit_to_hold",
    "funds_needed",
    "increments_since_last",
    "insert_order",
    "is_dust",
    "mark_routed",
    "plan_reservation",
    "protective_price",
    "record_trades",
    "refresh_totals",
    "refuse_over_limit",
    "set_status",
    "settlement_legs",
    "settlement_posting",
    "size_quote_budget",
    "trading_used",
    "validate",
    "value_floor",
]

"""Best-execution router (docs/architecture.md §C.1): which venue, or venues, fill an order at the best all-in
price.

A package of four modules: `pricing` (one book priced for a size), `decision` (the pure choice),
`routing` (the `Router`: fan-out, deadlines, breakers) and `errors` (the typed refusals). Their public
names are re-exported here.

The broker holds no order book. For each order the router asks every healthy venue for its book in
parallel, each under its own deadline; prices the requested size by walking the book (volume-weighted);
adds the venue's taker fee to get the all-in price; and picks:

1. the OTC desk, when the order's notional is above the OTC threshold and the desk can fill it within
   the customer's slippage limit (large orders would walk the public books and leak our flow);
2. otherwise the single exchange with the best all-in price, adjusted by a reliability term, among
   those that fill the whole size within the slippage limit (one placement is one thing to go wrong);
3. otherwise a split: greedy over all books merged by all-in level price, one leg per venue, each leg
   with its own protective limit (the deepest level it touches);
4. otherwise a refusal with a typed reason (`NoHealthyProvider`, `NoLiquidity`, `SlippageExceeded`).

Every decision, refusals included, is a `BestExecutionRecord` that is stored with the order.

Definitions, written once here:

- **Slippage** is the relative distance between the order's all-in average price and the best
  *fee-inclusive* touch over the venues that answered: for a buy `(all_in - ref) / ref` with
  `ref = min(best_ask * (1 + taker_fee))`; for a sell `(ref - all_in) / ref` with
  `ref = max(best_bid * (1 - taker_fee))`. It is never negative, and an order small enough to fill at
  the best venue's touch has zero slippage: the fee itself is not slippage, but a costlier venue or
  walking down the book is. See `slippage()`.
- **Rounding** follows the house rule of `models.assets.round_for_house`: an amount the customer pays
  rounds up, an amount the customer receives rounds down. A buyer's prices round up and a seller's
  down (`price_for_house`, 8 decimal places); the venue fee always rounds up; a base amount bought
  with a quote budget rounds down, one sold for a quote target rounds up. Divisions run in a context
  whose rounding has the same direction, so a rounded result is never on the customer's side of the
  exact value.
- **Reliability term**: a venue's all-in price is worsened by `reliability_penalty` (5 bp by default)
  per failure it had inside the breaker's window, so a flaky venue must be clearly cheaper to win. A
  venue whose breaker is open is not asked at all.

Nothing here knows Temporal or HTTP: venues are anything with `name`, `fees(symbol)` and
`order_book(symbol, depth)` (every `ExecutionAdapter` qualifies), and time comes from an injected clock.
"""

from __future__ import annotations

from services.router.decision import Asked, RouteRequest, decide
from services.router.errors import (
    InvalidRouteRequest,
    NoHealthyProvider,
    NoLiquidity,
    RoutingRefused,
    SlippageExceeded,
    UnpriceableSize,
)
from services.router.pricing import (
    PRECISION,
    PRICE_PLACES,
    customer_direction,
    fee_inclusive_touch,
    price_for_house,
    price_from_book,
    slippage,
)
from services.router.routing import BookSource, Router, RouterParams

__all__ = [
    "PRECISION",
    "PRICE_PLACES",
    "Asked",
    "BookSource",
    "InvalidRouteRequest",
    "NoHealthyProvider",
    "NoLiquidity",
    "RouteRequest",
    "Router",
    "RouterParams",
    "RoutingRefused",
    "SlippageExceeded",
    "UnpriceableSize",
    "customer_direction",
    "decide",
    "fee_inclusive_touch",
    "price_for_house",
    "price_from_book",
    "slippage",
]

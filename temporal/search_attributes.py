"""Custom search attributes that ops filter on in the Web UI (e.g. `CustomerId = "..."`).

They are registered at start-up on the dev server (CLI flags) and, for a real cluster, by
`ensure_registered`, which is idempotent.
"""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey

CUSTOMER_ID = SearchAttributeKey.for_keyword("CustomerId")
SYMBOL = SearchAttributeKey.for_keyword("Symbol")
SIDE = SearchAttributeKey.for_keyword("Side")
ORDER_STATUS = SearchAttributeKey.for_keyword("OrderStatus")
NOTIONAL_GBP = SearchAttributeKey.for_float("NotionalGbp")
CURRENCY = SearchAttributeKey.for_keyword("Currency")
WITHDRAWAL_STATUS = SearchAttributeKey.for_keyword("WithdrawalStatus")
KYC_STATUS = SearchAttributeKey.for_keyword("KycStatus")
KYC_TIER = SearchAttributeKey.for_int("KycTier")

KEYWORD = IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
DOUBLE = IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE
INT = IndexedValueType.INDEXED_VALUE_TYPE_INT

# name -> (key, indexed type, CLI type name)
_DECLARED: tuple[tuple[SearchAttributeKey, IndexedValueType.ValueType, str], ...] = (
    (CUSTOMER_ID, KEYWORD, "Keyword"),
    (SYMBOL, KEYWORD, "Keyword"),
    (SIDE, KEYWORD, "Keyword"),
    (ORDER_STATUS, KEYWORD, "Keyword"),
    (NOTIONAL_GBP, DOUBLE, "Double"),
    (CURRENCY, KEYWORD, "Keyword"),
    (WITHDRAWAL_STATUS, KEYWORD, "Keyword"),
    (KYC_STATUS, KEYWORD, "Keyword"),
    (KYC_TIER, INT, "Int"),
)

ALL = tuple(key for key, _, _ in _DECLARED)


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    flags: list[str] = []
    for key, _, cli_type in _DECLARED:
        flags += ["--search-attribute", f"{key.name}={cli_type}"]
    return flags


async def ensure_registered(client: Client, namespace: str) -> None:
    """Add any of our attributes the namespace lacks. Safe to call on every start."""
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except Exception:  # the time-skipping server does not implement the listing
        known = set()
    missing = {key.name: kind for key, kind, _ in _DECLARED if key.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )

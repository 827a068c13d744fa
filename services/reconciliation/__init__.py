"""Reconciliation domain logic (issue 20, docs/architecture.md §C.5, §14): the books against the venues and
the bank.

No Temporal and no HTTP here; activities/reconciliation.py reads the sources and calls these functions.
A module per concept: `sources` (the books as of the cut-off, funding, chain items), `in_flight`,
`fills` (matching venue trades with `provider_fills`), `runs` (verdict, record, breaker) and `halts`
(resuming); this package re-exports them, so `services.reconciliation.X` keeps working.

For one cut-off, per currency:

    provider   = what every venue, the OTC desk and the bank say they hold for us
    ledger     = our house asset accounts (`provider:<venue>`, `bank:cash`) summed from the entries
                 created up to the cut-off (never the live balances, so postings during the run cause no
                 false drift). House accounts are kept from the liability side, so an asset is minus its sum.
    in-flight  = movements our sagas know about that the provider already shows and the books not yet
                 (a venue trade of an order not yet settled, a venue deposit not yet credited; minus a
                 withdrawal sent and not yet completed), each listed by id
    drift      = provider - ledger - in-flight, compared with the asset's tolerance

A drift beyond tolerance, a venue trade that no `provider_fills` row explains (or the reverse), or a
completed withdrawal absent on-chain halts that currency's withdrawals at once (the existing
`currency_halts` row every withdrawal saga obeys, with a customer-safe reason), and a
`reconciliation_halts` row records why and which run. A source that cannot be read makes the currency
ERROR (never MATCHED) and, after several ERROR runs in a row, alerts without halting. Resuming needs
`clean_runs_to_resume` clean runs in a row and two different staff acknowledging with a reason; two
staff can also override. Everything is audited.
"""

from __future__ import annotations

from services.reconciliation.fills import QUOTE_TOLERANCE, SEP, explain_and_match, match_fills
from services.reconciliation.halts import ResumeRefused, acknowledge, customer_message
from services.reconciliation.in_flight import VenueTrade, balances_at_cut_off, in_flight
from services.reconciliation.runs import Policy, assess, last_cut_off, load_result, record_run
from services.reconciliation.sources import (
    BANK_SOURCE,
    CAPITAL,
    HOT_WALLET,
    WALLET_SOURCE,
    ZERO,
    ChainItem,
    book_float_funding,
    chain_items,
    judge_chain_item,
    ledger_at,
)

__all__ = [
    "BANK_SOURCE",
    "CAPITAL",
    "HOT_WALLET",
    "QUOTE_TOLERANCE",
    "SEP",
    "WALLET_SOURCE",
    "ZERO",
    "ChainItem",
    "Policy",
    "ResumeRefused",
    "VenueTrade",
    "acknowledge",
    "assess",
    "balances_at_cut_off",
    "book_float_funding",
    "chain_items",
    "customer_message",
    "explain_and_match",
    "in_flight",
    "judge_chain_item",
    "last_cut_off",
    "ledger_at",
    "load_result",
    "match_fills",
    "record_run",
]

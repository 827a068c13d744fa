"""Reconciliation's readings of our own records: the books as of the cut-off, the floats the house funded,
and the chain transactions our books say happened (issue 20 item 2).

House accounts are kept from the liability side, so an asset is minus its sum.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from models.reconciliation import LedgerRead
from services.ledger import House, HouseAccount, Ledger, Leg, Posting

ZERO = Decimal(0)
BANK_SOURCE = "bank"
WALLET_SOURCE = "wallet"  # our own hot wallets on-chain (self-custody), house account `wallet:hot`
HOT_WALLET = "wallet:hot"
CAPITAL = "treasury:capital"  # the house's own money: the other side of a float funding


# --- funding: the floats the house puts at a venue or the bank --------------------------------------


async def book_float_funding(
    ledger: Ledger, *, source: str, currency: str, amount: Decimal, funding_id: uuid.UUID
) -> None:
    """Book house money placed at a source (venue float, bank opening balance) against capital, so the
    books show what the source holds. Keyed by `funding_id`: booking twice posts once."""
    code = {BANK_SOURCE: HouseAccount.BANK_CASH, WALLET_SOURCE: HOT_WALLET}.get(
        source
    ) or HouseAccount.provider(source)
    await ledger.post(
        Posting(
            reference_type="float_funding",
            reference_id=funding_id,
            step=f"{source}:{currency}",
            kind="float_funding",
            legs=[Leg(House(code), currency, -amount), Leg(House(CAPITAL), currency, amount)],
        )
    )


# --- ledger as of the cut-off -----------------------------------------------------------------------


def _source_of(code: str) -> str | None:
    if code == HouseAccount.BANK_CASH:
        return BANK_SOURCE
    if code == HOT_WALLET:
        return WALLET_SOURCE
    if code.startswith("provider:"):
        return code.removeprefix("provider:")
    return None


async def ledger_at(engine: AsyncEngine, cut_off: datetime) -> LedgerRead:
    """House assets per source and customer liabilities per currency, as the entries up to `cut_off` make
    them (entries posted during the run are taken off, so they cause no false drift)."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                # Each account's balance less its entries after the cut-off (an index range per account on
                # (account_id, created_at)): the same figure as summing every entry up to the cut-off, since
                # an account's balance is the sum of its entries (ledger.verify checks it), without
                # reading the whole journal. The statement's snapshot sees balance and entries together.
                text(
                    "SELECT a.kind, CASE WHEN a.kind = 'house' THEN a.code END, a.currency, "
                    "sum(a.balance - coalesce((SELECT sum(e.amount) FROM ledger_entries e "
                    "WHERE e.account_id = a.id AND e.created_at > :cut), 0)) "
                    "FROM accounts a WHERE a.kind = 'customer' OR a.code IN (:bank, :wallet) "
                    "OR a.code LIKE 'provider:%' "
                    "GROUP BY 1, 2, 3"
                ),
                {"cut": cut_off, "bank": HouseAccount.BANK_CASH, "wallet": HOT_WALLET},
            )
        ).all()
    out = LedgerRead()
    for kind, code, currency, total in rows:
        if kind == "customer":
            out.liabilities[currency] = out.liabilities.get(currency, ZERO) + total
            continue
        source = _source_of(code)
        if source is not None:
            out.assets.setdefault(source, {})[currency] = -total
    return out


# --- the chain -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainItem:
    """A transaction our books say happened on a chain: a completed withdrawal or a credited deposit."""

    kind: str  # "withdrawal" | "deposit"
    id: str
    currency: str
    txid: str
    address: str
    amount: Decimal


async def chain_items(engine: AsyncEngine, *, since: datetime, currencies: Iterable[str]) -> list[ChainItem]:
    """Completed crypto withdrawals and credited crypto deposits since `since`, to look up on-chain."""
    wanted = list(currencies)
    async with engine.connect() as conn:
        ws = (
            await conn.execute(
                text(
                    "SELECT id, currency, tx_hash, destination_address, amount FROM withdrawals "
                    "WHERE status = 'COMPLETED' AND currency = ANY(CAST(:c AS text[])) AND completed_at >= :s"
                ),
                {"c": wanted, "s": since},
            )
        ).all()
        ds = (
            await conn.execute(
                text(
                    "SELECT id, currency, provider_tx_id, details->>'address', amount FROM deposits "
                    "WHERE payment_method = 'CRYPTO' AND status IN ('CONFIRMED', 'SUSPENSE') "
                    "AND currency = ANY(CAST(:c AS text[])) AND created_at >= :s"
                ),
                {"c": wanted, "s": since},
            )
        ).all()
    return [ChainItem("withdrawal", str(r[0]), r[1], r[2] or "", r[3] or "", r[4]) for r in ws] + [
        ChainItem("deposit", str(r[0]), r[1], r[2] or "", r[3] or "", r[4]) for r in ds
    ]


def judge_chain_item(
    item: ChainItem, found: tuple[str, Decimal, int] | None, min_confirmations: int
) -> dict[str, Any] | None:
    """None when the chain agrees with our books; else what is wrong, for the run's details.

    `found` is (destination, amount, confirmations) as the chain reports the transaction, None if absent."""
    base = {"kind": item.kind, "id": item.id, "currency": item.currency, "txid": item.txid}
    if found is None:
        return {**base, "problem": "absent on-chain"}
    to, amount, confirmations = found
    if to.lower() != item.address.lower() and item.address:
        return {**base, "problem": "different destination", "on_chain_to": to}
    if amount != item.amount:
        return {**base, "problem": "different amount", "on_chain_amount": str(amount)}
    if item.kind == "deposit" and confirmations < min_confirmations:
        return {**base, "problem": f"{confirmations} confirmation(s), {min_confirmations} needed"}
    return None

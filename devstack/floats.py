"""The dev stack's opening floats: the books start out agreeing with the sandboxes.

Reconciliation compares what each venue and the bank hold with the house accounts that say so. A real broker
books the money it places at a venue as treasury funding when it sends it. The sandboxes are born with their
balances on every `make run` while the ledger in `.local/` lives on, so the difference between what a sandbox
holds and what the books say is booked here as treasury funding (`services.reconciliation.book_float_funding`,
against `treasury:capital`), before any worker starts. Without it the first scheduled reconciliation run would
report the whole float as drift and halt every currency's withdrawals.

The same holds for the venues' trade histories: a sandbox is born without the fills of earlier runs, so our
fills from a run that ended before reconciliation matched them can never be matched; they are marked
reconciled here (`forget_sandbox_fills`), or the first run would halt every currency for "unmatched fills".

Only for the local sandboxes: with real venues (their URLs configured) nothing is booked or marked here.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text

from config import Settings
from models.assets import SCALES
from models.database import async_engine
from providers.bank import BankClient, account_balance
from providers.exchanges.ccxt_adapter import build_adapters
from services.ledger import Ledger
from services.reconciliation import BANK_SOURCE, book_float_funding, ledger_at


async def _align(settings: Settings, database_url: str) -> list[str]:
    engine = async_engine(database_url, pool_size=1, max_overflow=0)
    adapters = build_adapters(settings)
    bank = BankClient.from_settings(settings, timeout=5.0)
    booked: list[str] = []
    try:
        ledger = Ledger(engine)
        books = await ledger_at(engine, datetime.now(UTC))
        held: dict[str, dict[str, Decimal]] = {}
        for name, adapter in adapters.items():
            held[name] = {c: (await adapter.balance(c)).total for c in SCALES}
        held[BANK_SOURCE] = {"GBP": await account_balance(bank)}
        for source, balances in held.items():
            for currency, amount in balances.items():
                difference = amount - books.assets.get(source, {}).get(currency, Decimal(0))
                if difference:
                    await book_float_funding(
                        ledger, source=source, currency=currency, amount=difference, funding_id=uuid.uuid4()
                    )
                    booked.append(f"{source} {currency} {difference.normalize():+f}")
    finally:
        for adapter in adapters.values():
            await adapter.close()
        await bank.close()
        await engine.dispose()
    return booked


async def _forget_fills(database_url: str) -> int:
    engine = async_engine(database_url, pool_size=1, max_overflow=0)
    try:
        async with engine.begin() as conn:
            done = await conn.execute(
                text(
                    "UPDATE provider_fills SET reconciled = true, reconciled_at = now() WHERE NOT reconciled"
                )
            )
        return int(done.rowcount or 0)
    finally:
        await engine.dispose()


def forget_sandbox_fills(database_url: str) -> int:
    """Mark our unreconciled fills from earlier runs reconciled (the restarted sandboxes have no record
    of them); returns how many. Run before any worker starts, so no fill of this run is among them."""
    return asyncio.run(_forget_fills(database_url))


def align_sandbox_floats(settings: Settings, database_url: str) -> list[str]:
    """Book each sandbox's balance that the books do not show yet; returns what was booked."""
    return asyncio.run(_align(settings, database_url))

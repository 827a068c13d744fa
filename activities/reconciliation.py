"""Reconciliation activities: each source read by its own activity for one cut-off, then one record step.

Thin over services/reconciliation.py and the providers. A source that cannot be read is returned as an
error (the run records ERROR for it, never MATCHED) rather than raised: a reconciliation run must
finish and say what it could not see.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio import activity

from config import Settings
from models.assets import CRYPTO, SCALES
from models.reconciliation import (
    ChainRead,
    CutOff,
    FillsAndFlight,
    LedgerRead,
    ReconcileInput,
    RecordInput,
    RunResult,
    SourceQuery,
    SourceRead,
)
from providers.bank import BankClient, account_balance
from providers.chain.readers import ChainReader, build_readers, chain_urls
from providers.exchanges.base import ExecutionAdapter
from providers.exchanges.ccxt_adapter import CcxtAdapter
from providers.exchanges.trades import venue_trades
from services import reconciliation as recon
from services import treasury

log = logging.getLogger("reconciliation")
STABLE_READS = 3  # balance readings bracketed by the same trades after the cut-off, tried before ERROR


def policy_from(settings: Settings) -> recon.Policy:
    return recon.Policy(
        tolerances=settings.reconciliation_tolerances,
        clean_runs_to_resume=settings.reconciliation_clean_runs_to_resume,
        error_runs_to_alert=settings.reconciliation_error_runs_to_alert,
    )


async def _trades_after(adapter: ExecutionAdapter, cut_ms: int) -> list[recon.VenueTrade]:
    """The venue's trades of ours executed after the cut-off (none for the OTC desk: its trades are binding
    quotes booked when accepted)."""
    if not isinstance(adapter, CcxtAdapter):
        return []
    return [t for t in await venue_trades(adapter, cut_ms) if not t.at_or_before(cut_ms)]


async def _balances(adapter: ExecutionAdapter) -> dict[str, Decimal]:
    """Every currency's total at the venue; from one read where the venue gives them together (one
    snapshot of the account, one request behind its throttle)."""
    if isinstance(adapter, CcxtAdapter):
        return {c: b.total for c, b in (await adapter.balances(SCALES)).items()}
    return {currency: (await adapter.balance(currency)).total for currency in SCALES}


def _why(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:200]}"


class ReconciliationActivities:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        settings: Settings,
        bank: Callable[[], BankClient],
        adapters: Callable[[], Mapping[str, ExecutionAdapter]],
        chains: Callable[[], Mapping[str, ChainReader]] | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._bank = bank
        self._adapters = adapters
        self._chains = chains or self._default_chains
        self._built_chains: Mapping[str, ChainReader] | None = None

    def _default_chains(self) -> Mapping[str, ChainReader]:
        if self._built_chains is None:
            self._built_chains = build_readers(chain_urls(self._settings))
        return self._built_chains

    @activity.defn(name="recon.cut_off")
    async def cut_off(self, data: ReconcileInput) -> CutOff:
        """The run's cut-off (now) and the sources configured."""
        assert data.run_id is not None
        since = await recon.last_cut_off(self._engine)
        return CutOff(
            run_id=data.run_id,
            cut_off=datetime.now(UTC),
            venues=sorted(self._adapters()),
            bank=True,
            wallets=bool(self._settings.hot_wallets),
            since=since,
        )

    @activity.defn(name="recon.read_venue")
    async def read_venue(self, q: SourceQuery) -> SourceRead:
        """Our omnibus balance at one venue as it stood at the cut-off (ccxt `fetch_balance`; the OTC desk's
        own balance call).

        A venue tells its balance now, not at the cut-off: the trades it executed after the cut-off are
        taken back off. They are read before and after the balance, and the reading counts only when both
        agree (a trade between them might or might not be in the balance); else it is read again."""
        adapter = self._adapters().get(q.source)
        if adapter is None:
            return SourceRead(source=q.source, error="not configured")
        cut_ms = int(q.cut_off.timestamp() * 1000)
        try:
            for _ in range(STABLE_READS):
                before = await _trades_after(adapter, cut_ms)
                out = await _balances(adapter)
                after = await _trades_after(adapter, cut_ms)
                if {t.trade_id for t in before} == {t.trade_id for t in after}:
                    break
            else:
                return SourceRead(source=q.source, error="the venue traded while its balance was read")
        except Exception as e:  # any failure to read is ERROR for the run, never a guess
            log.warning("reconciliation: %s balance unreadable: %s", q.source, type(e).__name__)
            return SourceRead(source=q.source, error=_why(e))
        return SourceRead(
            source=q.source,
            balances=recon.balances_at_cut_off(out, after),
            items=[
                {"kind": "trade_after_cut_off", "venue_order_id": t.order_id, "trade_id": t.trade_id}
                for t in after
            ],
        )

    @activity.defn(name="recon.read_bank")
    async def read_bank(self, q: SourceQuery) -> SourceRead:
        """The safeguarding account's GBP balance at the bank."""
        try:
            balance = await account_balance(self._bank())
        except Exception as e:
            log.warning("reconciliation: bank balance unreadable: %s", type(e).__name__)
            return SourceRead(source=recon.BANK_SOURCE, error=_why(e))
        return SourceRead(source=recon.BANK_SOURCE, balances={"GBP": balance})

    @activity.defn(name="recon.read_wallets")
    async def read_wallets(self, q: SourceQuery) -> SourceRead:
        """Our self-custody hot wallets' balances on-chain (Esplora address stats, `eth_getBalance`)."""
        readers = self._chains()
        out: dict[str, Decimal] = {}
        try:
            for currency, address in sorted(self._settings.hot_wallets.items()):
                out[currency] = await readers[currency].balance(address)
        except Exception as e:
            log.warning("reconciliation: hot wallet balance unreadable: %s", type(e).__name__)
            return SourceRead(source=recon.WALLET_SOURCE, error=_why(e))
        return SourceRead(source=recon.WALLET_SOURCE, balances=out)

    @activity.defn(name="recon.read_ledger")
    async def read_ledger(self, c: CutOff) -> LedgerRead:
        """The books as of the cut-off (entries created up to it, not live balances)."""
        return await recon.ledger_at(self._engine, c.cut_off)

    @activity.defn(name="recon.read_fills")
    async def read_fills(self, c: CutOff) -> FillsAndFlight:
        """Venue trades from the previous run to this cut-off matched with `provider_fills`, and the
        in-flight items as of the cut-off (the trades after it are taken off the venues' balances)."""
        cut_ms = int(c.cut_off.timestamp() * 1000)
        since = (c.since or c.cut_off - timedelta(days=1)) - timedelta(hours=1)
        trades: list[recon.VenueTrade] = []
        deposits: list[dict[str, str]] = []
        venues: list[str] = []
        error: str | None = None
        for name, adapter in sorted(self._adapters().items()):
            if not isinstance(adapter, CcxtAdapter):
                continue  # the OTC desk's trades are binding quotes, booked at acceptance
            try:
                read = await venue_trades(adapter, int(since.timestamp() * 1000))
                trades += [t for t in read if t.at_or_before(cut_ms)]
                if name == self._settings.crypto_deposit_provider:
                    for dep in await adapter.deposits(None):
                        if dep.status == "ok" and dep.currency in CRYPTO:
                            deposits.append(
                                {"venue": name, "tx_id": dep.tx_id, "currency": dep.currency,
                                 "amount": str(dep.amount)}
                            )  # fmt: skip
                venues.append(name)
            except Exception as e:
                log.warning("reconciliation: %s trades unreadable: %s", name, type(e).__name__)
                error = f"{name}: {_why(e)}"
        transfers, credited = await self._transfers()
        if transfers is None:
            error = error or "float transfers: receiving venue unreadable"
            transfers = []
        return await recon.explain_and_match(
            self._engine, cut_off=c.cut_off, trades=trades, venues=venues, venue_deposits=deposits,
            transfers=transfers, credited_transfers=credited, error=error,
            without_trades=[n for n, a in self._adapters().items() if not isinstance(a, CcxtAdapter)],
        )  # fmt: skip

    async def _transfers(self) -> tuple[list[treasury.TransferInFlight] | None, set[uuid.UUID]]:
        """Float transfers not settled, and which of them the receiving venue has credited already.
        (None, ...) when a receiving venue could not be asked: the run cannot explain them, so ERROR."""
        transfers = await treasury.transfers_in_flight(self._engine)
        credited: set[uuid.UUID] = set()
        adapters = self._adapters()
        try:
            for t in transfers:
                adapter = adapters.get(t.to_venue)
                if t.tx_hash is None or adapter is None:
                    continue
                tx = treasury.normal_tx(t.tx_hash)
                if any(
                    treasury.normal_tx(d.tx_id) == tx and d.status == "ok"
                    for d in await adapter.deposits(t.currency)
                ):
                    credited.add(t.id)
        except Exception as e:
            log.warning("reconciliation: transfer credits unreadable: %s", type(e).__name__)
            return None, credited
        return transfers, credited

    @activity.defn(name="recon.check_chain")
    async def check_chain(self, c: CutOff) -> ChainRead:
        """Every completed crypto withdrawal on-chain with its amount and destination; every credited crypto
        deposit with its transaction and enough confirmations. A node that can't be asked is ERROR."""
        readers = self._chains()
        since = (c.since or c.cut_off - timedelta(days=1)) - timedelta(days=1)
        items = await recon.chain_items(self._engine, since=since, currencies=sorted(readers))
        out = ChainRead()
        try:
            for item in items:
                if not item.txid:
                    problem: dict[str, Any] | None = {
                        "kind": item.kind, "id": item.id, "currency": item.currency, "problem": "no txid"
                    }  # fmt: skip
                else:
                    tx = await readers[item.currency].transaction(item.txid)
                    found = None if tx is None else (tx.to, tx.amount, tx.confirmations)
                    problem = recon.judge_chain_item(item, found, self._settings.crypto_deposit_confirmations)
                out.checked += 1
                if problem is not None:
                    (out.missing_withdrawals if item.kind == "withdrawal" else out.missing_deposits).append(
                        problem
                    )
        except Exception as e:
            log.warning("reconciliation: chain unreadable: %s", type(e).__name__)
            return ChainRead(error=_why(e), checked=out.checked)
        return out

    @activity.defn(name="recon.record")
    async def record(self, data: RecordInput) -> RunResult:
        """One row per currency, the circuit breaker and the alerts; idempotent by run id."""
        return await recon.record_run(self._engine, data, policy_from(self._settings))

"""The reconciliation saga (issue 20).

`ReconciliationWorkflow` runs one reconciliation: it takes one cut-off, reads every source in parallel
(each venue's and the OTC desk's balance, the bank's, the books as of the cut-off, and the venue trades
with the in-flight items), then records one row per currency and applies the circuit breaker. It
guarantees a result for every currency: a source it could not read makes that run ERROR, never MATCHED.
The Temporal schedule `ops-reconciliation` starts it every `reconciliation_interval_minutes` (overlap:
skip; missed runs caught up within `reconciliation_catchup_minutes`; temporal/schedules.py); ops start
it on demand too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.reconciliation import ReconciliationActivities
    from models.reconciliation import (
        FillsAndFlight,
        ReconcileInput,
        RecordInput,
        RunResult,
        SourceQuery,
        SourceRead,
    )

Arg = TypeVar("Arg")
Out = TypeVar("Out")
READ_TIMEOUT = timedelta(seconds=60)
READ_RETRY = RetryPolicy(maximum_attempts=3, maximum_interval=timedelta(seconds=5))


def reconciliation_workflow_id(run_id: object) -> str:
    return f"reconciliation-{run_id}"


@workflow.defn
class ReconciliationWorkflow:
    """One reconciliation run over every currency for one cut-off."""

    @staticmethod
    def _read(method: Callable[[Any, Arg], Awaitable[Out]], arg: Arg) -> asyncio.Task[Out]:
        """Start one read (a source, the books, the trades, the chain) with the reads' timeout and retries."""
        return asyncio.ensure_future(
            workflow.execute_activity_method(
                method, arg, start_to_close_timeout=READ_TIMEOUT, retry_policy=READ_RETRY
            )
        )

    @workflow.run
    async def run(self, data: ReconcileInput) -> RunResult:
        data = data.model_copy(update={"run_id": data.run_id or workflow.uuid4()})
        cut = await self._read(ReconciliationActivities.cut_off, data)
        reads: list[asyncio.Task[SourceRead]] = [
            self._read(ReconciliationActivities.read_venue, SourceQuery(source=v, cut_off=cut.cut_off))
            for v in cut.venues
        ]
        if cut.bank:
            reads.append(
                self._read(
                    ReconciliationActivities.read_bank, SourceQuery(source="bank", cut_off=cut.cut_off)
                )
            )
        if cut.wallets:
            reads.append(
                self._read(
                    ReconciliationActivities.read_wallets, SourceQuery(source="wallet", cut_off=cut.cut_off)
                )
            )
        ledger = self._read(ReconciliationActivities.read_ledger, cut)
        fills = self._read(ReconciliationActivities.read_fills, cut)
        chain = self._read(ReconciliationActivities.check_chain, cut)
        sources = list(await asyncio.gather(*reads))
        ledger_error: str | None = None
        try:
            ledger_read = await ledger
        except Exception:
            ledger_read, ledger_error = None, "ledger unreadable"
        fills_read: FillsAndFlight = await fills
        return await workflow.execute_activity_method(
            ReconciliationActivities.record,
            RecordInput(
                run_id=cut.run_id,
                cut_off=cut.cut_off,
                trigger=data.trigger,
                sources=sources,
                ledger=ledger_read,
                ledger_error=ledger_error,
                in_flight=fills_read.in_flight,
                fills=fills_read.fills,
                chain=await chain,
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=10)),
        )

"""Reference workflows for the benchmarks (kept in a module of their own: Temporal's workflow sandbox
re-imports a workflow's module, so it must import nothing but temporalio)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="noop.local")
async def noop_local(x: str) -> str:
    return x


@activity.defn(name="noop.remote")
async def noop_remote(x: str) -> str:
    return x


@workflow.defn
class NoopOrderShape:
    """Five local activities and two regular ones in the order saga's sequence (a filled market order):
    accept, quote, reserve; place; settle; notify; the AML trade screening (issue 16 added it)."""

    @workflow.run
    async def run(self, x: str) -> str:
        for _ in range(3):
            await workflow.execute_local_activity(noop_local, x, start_to_close_timeout=timedelta(seconds=10))
        await workflow.execute_activity(noop_remote, x, start_to_close_timeout=timedelta(seconds=10))
        await workflow.execute_local_activity(noop_local, x, start_to_close_timeout=timedelta(seconds=10))
        await workflow.execute_activity(noop_remote, x, start_to_close_timeout=timedelta(seconds=10))
        await workflow.execute_local_activity(noop_local, x, start_to_close_timeout=timedelta(seconds=10))
        return x

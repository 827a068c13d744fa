"""A trivial workflow: proves a worker is polling and can run activities (health checks, tests)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.ping import PingActivities, PingInput


class PingResult(BaseModel):
    echoed: str
    database_ok: bool


@workflow.defn
class PingWorkflow:
    """Echoes its input through one activity that also touches the database."""

    @workflow.run
    async def run(self, message: str) -> PingResult:
        echoed = await workflow.execute_activity_method(
            PingActivities.ping,
            PingInput(message=message),
            start_to_close_timeout=timedelta(seconds=10),
        )
        return PingResult(echoed=echoed.message, database_ok=echoed.database_ok)

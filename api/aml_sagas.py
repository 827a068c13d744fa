"""The API's side of the SAR workflow: sign the officer's decision token (after the route's TOTP check),
start `sar-<case id>` on the first decision, and send the decision as an update whose answer says
whether it counted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import EngineDep, SettingsDep, TemporalDep
from api.errors import ProblemError, ServiceUnavailable
from api.sagas import saga_answers
from config import Settings
from models.aml_cases_api import SarDecision, SarDecisionOut, SarInput
from services.aml.cases import case_detail
from services.aml.sar import decision_detail
from services.decision_tokens import DecisionTokens
from temporal import task_queues
from workflows.sar import SarWorkflow, sar_workflow_id


class SarSagas:
    def __init__(self, client: Client, settings: Settings, engine: AsyncEngine) -> None:
        self.client = client
        self.settings = settings
        self.engine = engine

    def sign(self, staff_id: uuid.UUID, case_id: uuid.UUID, decision: SarDecision) -> str:
        tokens = DecisionTokens.from_secret(
            self.settings.jwt_secret, timedelta(seconds=self.settings.decision_token_ttl_seconds)
        )
        return tokens.issue(
            actor_id=staff_id, action=f"aml_case_{decision.kind}", now=datetime.now(UTC),
            detail=decision_detail(decision), case_id=case_id,
        )  # fmt: skip

    async def case_closed(self, case_id: uuid.UUID) -> None:
        """Tell the case's SAR saga, if one runs, that the case was closed (it checks, then ends). No saga
        or one already finished: nothing to tell. Temporal unreachable: 503, and closing again (idempotent)
        tells it then."""
        try:
            await self.client.get_workflow_handle(sar_workflow_id(case_id)).signal(SarWorkflow.case_closed)
        except RPCError as e:
            if e.status is not RPCStatusCode.NOT_FOUND:
                raise ServiceUnavailable("temporal") from e

    async def decide(self, case_id: uuid.UUID, decision: SarDecision) -> SarDecisionOut:
        """Start the case's workflow if it is not running (once: a finished one is never restarted), then
        the decision as an update; refused → 403 (unproven) or 409."""
        case = await case_detail(self.engine, case_id)  # 404 for no such case
        decision.token = self.sign(decision.staff_id, case_id, decision)
        wf_id = sar_workflow_id(case_id)
        try:
            await self.client.start_workflow(
                SarWorkflow.run,
                SarInput(case_id=case_id, user_id=case.user_id),
                id=wf_id,
                task_queue=task_queues.OPS,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )
        except WorkflowAlreadyStartedError:
            pass  # finished: the update below answers that it is gone
        except RPCError as e:
            raise ServiceUnavailable("temporal") from e
        handle = self.client.get_workflow_handle(wf_id)
        gone = ProblemError(409, "case_decided", "the case's decisions are complete")
        with saga_answers(gone=gone):
            described = await handle.describe()
            if described.status != WorkflowExecutionStatus.RUNNING:
                raise gone
            outcome = await handle.execute_update("decide", decision, result_type=SarDecisionOut)
        if not outcome.accepted:
            raise ProblemError(
                403 if outcome.code == "unproven" else 409, outcome.code, outcome.detail or outcome.code
            )
        return outcome


def sar_sagas(client: TemporalDep, settings: SettingsDep, engine: EngineDep) -> SarSagas:
    return SarSagas(client, settings, engine)


SarSagasDep = Annotated[SarSagas, Depends(sar_sagas)]

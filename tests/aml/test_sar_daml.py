"""DAML deadlines: 7 UK working days (England's bank holidays) for the notice period, 31 days of
moratorium after a refusal; on the time-skipping test server, the SAR workflow's durable timer waits
exactly that long across Christmas and New Year, and the SAR workflow's history replays."""

from __future__ import annotations

import shutil
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from temporalio.client import WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from models.aml_cases_api import SarDecision, SarDecisionOut, SarInput, SarState
from services.aml import sar_deadlines
from services.decision_tokens import DecisionTokens, ProofInvalid
from temporal import search_attributes, task_queues
from tests.aml.conftest import open_case, staff
from tests.payments.conftest import Stack, make_user, wait_for
from workers.registry import Dependencies, build
from workflows.sar import SarWorkflow, sar_workflow_id

# A request on Wednesday 23 December 2026 counts 24, 29, 30, 31 December, 4, 5 and 6 January: 25 and
# 28 December (Christmas; Boxing Day on a Saturday moves to Monday) and 1 January are bank holidays.
REQUESTED = datetime(2026, 12, 23, 12, 0, tzinfo=UTC)
NOTICE_ENDS = datetime(2027, 1, 7, 0, 0, tzinfo=UTC)  # the end of 6 January, London (GMT)


def test_seven_working_days_skip_weekends_and_englands_bank_holidays() -> None:
    assert sar_deadlines.add_working_days(date(2026, 12, 23), 7) == date(2027, 1, 6)
    assert sar_deadlines.notice_period_ends(REQUESTED) == NOTICE_ENDS
    # The near miss: an ordinary week is 7 working days = 9 calendar days.
    assert sar_deadlines.add_working_days(date(2026, 11, 4), 7) == date(2026, 11, 13)
    # Late on the 23rd in London is still the 23rd; in summer the London day ends at 23:00 UTC.
    assert sar_deadlines.notice_period_ends(datetime(2026, 12, 23, 23, 30, tzinfo=UTC)) == NOTICE_ENDS
    assert sar_deadlines.notice_period_ends(datetime(2026, 7, 1, 9, 0, tzinfo=UTC)) == datetime(
        2026, 7, 10, 23, 0, tzinfo=UTC
    )
    # Scotland's 2 January is not an English bank holiday: 4 January 2027 is a working day here.
    assert sar_deadlines.is_working_day(date(2027, 1, 4))
    assert not sar_deadlines.is_working_day(date(2026, 12, 28))
    # The moratorium: 31 days starting with the day the refusal arrives.
    assert sar_deadlines.moratorium_ends(datetime(2027, 1, 5, 10, 0, tzinfo=UTC)) == datetime(
        2027, 2, 5, 0, 0, tzinfo=UTC
    )


async def _sar_case(stack: Stack) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, Any]:
    """A case with an unfinished withdrawal of its customer (recorded, nothing held: the timer is what
    this tests; the withdrawal saga's side is in test_sar.py), and a compliance officer."""
    customer = await make_user(stack)
    withdrawal_id = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO withdrawals (id, user_id, currency, amount, status) "
                "VALUES (:id, :u, 'GBP', 100, 'UNDER_REVIEW')"
            ),
            {"id": withdrawal_id, "u": customer.id},
        )
    case_id = await open_case(stack, customer.id, subject_type="withdrawal", subject_id=str(withdrawal_id))
    return customer.id, case_id, withdrawal_id, await staff(stack)


def _decision(stack: Stack, officer: Any, case_id: uuid.UUID, kind: str, **kw: Any) -> SarDecision:
    detail = kw.get("nca_reference", "") if kind == "file_sar" else ""
    token = DecisionTokens.from_secret(stack.settings.jwt_secret).issue(
        actor_id=officer.id, action=f"aml_case_{kind}", now=datetime.now(UTC), detail=detail, case_id=case_id
    )
    return SarDecision(kind=kind, staff_id=officer.id, token=token, **kw)


async def _daml_state(stack: Stack, case_id: uuid.UUID) -> str:
    async with stack.engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT daml_state FROM aml_sar_reports WHERE case_id = :c"), {"c": case_id}
                )
            ).scalar_one()
        )


async def _settled(handle: WorkflowHandle[Any, Any], daml_state: str) -> SarState:
    """The workflow's state once the timer's consent step has run (in real time, after the skip)."""

    async def reached() -> SarState | None:
        state = await handle.query(SarWorkflow.state)
        return state if state.daml_state == daml_state else None

    found: SarState = await wait_for(reached)
    return found


async def _skip_to(env: WorkflowEnvironment, at: datetime) -> None:
    now = await env.get_current_time()
    if at > now:
        await env.sleep(at - now)


@pytest.mark.asyncio(loop_scope="session")
async def test_the_daml_timer_waits_seven_uk_working_days_across_christmas_then_consent_is_deemed(
    stack: Stack,
) -> None:
    user_id, case_id, withdrawal_id, officer = await _sar_case(stack)
    refused_case = await _sar_case(stack)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)),
        data_converter=pydantic_data_converter,
    )
    try:
        await search_attributes.ensure_registered(env.client, "default")
        spec = build(
            Dependencies(settings=stack.settings, engine=stack.engine, adapters={}, send_email=False)
        )[task_queues.OPS]
        queue = f"sar-ts-{uuid.uuid4()}"
        async with Worker(
            env.client, task_queue=queue, workflows=[SarWorkflow], activities=list(spec.activities)
        ):
            await _skip_to(env, REQUESTED)
            handle: WorkflowHandle[Any, Any] = await env.client.start_workflow(
                SarWorkflow.run, SarInput(case_id=case_id, user_id=user_id), id=sar_workflow_id(case_id),
                task_queue=queue,
            )  # fmt: skip
            filed = await handle.execute_update(
                "decide",
                _decision(stack, officer, case_id, "file_sar", nca_reference="NCA-1", narrative="n",
                          daml_withdrawal_id=withdrawal_id),
                result_type=SarDecisionOut,
            )  # fmt: skip
            assert filed.accepted and filed.stage == "awaiting_consent", filed
            state = await handle.query(SarWorkflow.state)
            assert state.ends_at == NOTICE_ENDS

            # One hour before the end of the 7th working day: still waiting for the NCA.
            await _skip_to(env, NOTICE_ENDS - timedelta(hours=1))
            assert (await handle.query(SarWorkflow.state)).daml_state == "awaiting_consent"
            assert await _daml_state(stack, case_id) == "awaiting_consent"

            # Past it without a refusal: consent is deemed.
            await _skip_to(env, NOTICE_ENDS + timedelta(minutes=1))
            result = await _settled(handle, "consented")
            assert (result.daml_state, result.stage) == ("consented", "reported")
            assert await _daml_state(stack, case_id) == "consented"

            # A refusal within the notice period: 31 days of moratorium from the day it arrives.
            r_user, r_case, r_withdrawal, r_officer = refused_case
            r_handle: WorkflowHandle[Any, Any] = await env.client.start_workflow(
                SarWorkflow.run, SarInput(case_id=r_case, user_id=r_user), id=sar_workflow_id(r_case),
                task_queue=queue,
            )  # fmt: skip
            filed = await r_handle.execute_update(
                "decide",
                _decision(stack, r_officer, r_case, "file_sar", nca_reference="NCA-2", narrative="n",
                          daml_withdrawal_id=r_withdrawal),
                result_type=SarDecisionOut,
            )  # fmt: skip
            assert filed.accepted, filed
            refusal_day = await env.get_current_time()
            refused = await r_handle.execute_update(
                "decide", _decision(stack, r_officer, r_case, "nca_refused"), result_type=SarDecisionOut
            )
            assert refused.accepted and refused.stage == "moratorium", refused
            moratorium_ends = sar_deadlines.moratorium_ends(refusal_day)
            assert (await r_handle.query(SarWorkflow.state)).ends_at == moratorium_ends
            await _skip_to(env, moratorium_ends - timedelta(hours=1))
            assert (await r_handle.query(SarWorkflow.state)).daml_state == "refused"
            await _skip_to(env, moratorium_ends + timedelta(minutes=1))
            r_result = await _settled(r_handle, "moratorium_ended")
            assert r_result.stage == "reported"
            assert await _daml_state(stack, r_case) == "moratorium_ended"

            histories = [await h.fetch_history() for h in (handle, r_handle)]
    finally:
        await env.shutdown()
    replayer = Replayer(workflows=[SarWorkflow], data_converter=pydantic_data_converter)
    for history in histories:
        await replayer.replay_workflow(history)

    async def audited() -> bool:
        async with stack.engine.connect() as conn:
            n = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM audit_log WHERE target_id = :c "
                        "AND action IN ('aml.daml.notice_period_ended', 'aml.sar.filed')"
                    ),
                    {"c": str(case_id)},
                )
            ).scalar_one()
        return bool(n == 2)

    await wait_for(audited)


def test_a_case_decision_token_proves_one_officer_one_case_one_action() -> None:
    tokens = DecisionTokens.from_secret("s" * 40)
    officer, case, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    token = tokens.issue(actor_id=officer, action="aml_case_clear", now=now, case_id=case)
    tokens.verify(token, actor_id=officer, action="aml_case_clear", now=now, case_id=case)
    for wrong in (
        {"actor_id": uuid.uuid4(), "action": "aml_case_clear", "case_id": case},
        {"actor_id": officer, "action": "aml_case_freeze", "case_id": case},
        {"actor_id": officer, "action": "aml_case_clear", "case_id": uuid.uuid4()},
    ):
        with pytest.raises(ProofInvalid):
            tokens.verify(token, now=now, **wrong)  # type: ignore[arg-type]
    with pytest.raises(ProofInvalid):  # a case token never passes for a withdrawal decision
        tokens.verify(token, actor_id=officer, action="aml_clear", now=now, withdrawal_id=case)
    with pytest.raises(ValueError):
        tokens.issue(actor_id=officer, action="aml_clear", now=now, case_id=case)

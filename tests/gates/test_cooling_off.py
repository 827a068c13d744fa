"""The 24-hour cooling-off is a durable timer: on the time-skipping server the saga sleeps the full
period on Temporal's clock, and the gate opens only when it fires. Its history replays."""

from __future__ import annotations

import shutil
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.first_trade import FirstTradeActivities
from models.first_trade_gates import Categorisation, CoolingOffInput
from services import first_trade_gates as gates
from workflows.first_trade import CoolingOffWorkflow, cooling_off_workflow_id

DAY = 24 * 3600


async def _customer(engine: AsyncEngine) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO users (id, email, password_hash, kyc_tier) VALUES (:i, :e, 'x', 2)"),
            {"i": user_id, "e": f"gates-{user_id.hex[:12]}@example.com"},
        )
    return user_id


async def test_the_cooling_off_gate_opens_only_when_the_24_hour_timer_fires(
    engine: AsyncEngine, temporal_client: Client, task_queue: str
) -> None:
    user_id = await _customer(engine)
    cooling = await gates.acknowledge_risk_warning(
        engine, user_id, gates.RISK_WARNING_VERSION, cooling_off_seconds=DAY
    )
    await gates.categorise(
        engine,
        user_id,
        Categorisation.model_validate(
            {
                "category": "sophisticated",
                "declaration": {"accepted": True, "private_equity_professional": True},
            }
        ),
    )
    async with engine.begin() as conn:  # the assessment passed (its own tests are in the API test)
        await conn.execute(
            text("UPDATE first_trade_gates SET assessment_passed_at = now() WHERE user_id = :u"),
            {"u": user_id},
        )

    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)),
        data_converter=temporal_client.data_converter,
    )
    try:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[CoolingOffWorkflow],
            activities=[FirstTradeActivities(engine=engine).complete_cooling_off],
        ):
            handle = await env.client.start_workflow(
                CoolingOffWorkflow.run,
                CoolingOffInput(user_id=user_id, seconds=DAY),
                id=cooling_off_workflow_id(user_id),
                task_queue=task_queue,
            )
            await env.sleep(timedelta(hours=23, minutes=59))
            async with engine.connect() as conn:
                with pytest.raises(gates.FirstTradeGateClosed) as refused:
                    await gates.enforce(conn, user_id)
            assert refused.value.code == "gate_cooling_off"
            assert cooling.ends_at.isoformat() in refused.value.detail

            result = await handle.result()  # the server skips the last minute
            assert result.completed
            async with engine.connect() as conn:
                await gates.enforce(conn, user_id)  # every gate passed
                shown = await gates.status(conn, user_id)
            assert {g["state"] for g in shown} == {"done"}
            history = await handle.fetch_history()
    finally:
        await env.shutdown()
    timers = [e for e in history.events if e.HasField("timer_started_event_attributes")]
    assert len(timers) == 1
    assert timers[0].timer_started_event_attributes.start_to_fire_timeout.ToTimedelta() == timedelta(days=1)
    replayer = Replayer(workflows=[CoolingOffWorkflow], data_converter=temporal_client.data_converter)
    await replayer.replay_workflow(history)

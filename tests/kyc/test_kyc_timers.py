"""The KYC saga's long timers on the time-skipping test server, and a Replayer pass over recorded histories.

A customer asked to resubmit (RED + RETRY) who never does: after `resubmit_timeout_seconds` (30 days here,
skipped) the submission is EXPIRED, recorded and mailed, and the tier is not granted.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from models.kyc import KycInput
from providers.kyc import KycVendorClient
from services import kyc, kyc_documents
from temporal import search_attributes, task_queues
from tests.kyc.conftest import (
    TIER1,
    Stack,
    mails_once,
    make_user,
    submission,
    submit_tier2,
    tier,
    upload_passport,
    wait_status,
)
from workers.registry import Dependencies, build
from workflows.kyc import KYCWorkflow, kyc_workflow_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_an_unanswered_resubmission_request_expires_after_its_timeout(stack: Stack) -> None:
    kim = await make_user(stack, tier=1)
    await stack.control(
        "POST",
        "/_control/outcomes",
        json={
            "externalUserId": str(kim.id),
            "outcomes": [{"reviewAnswer": "RED", "reviewRejectType": "RETRY"}],
        },
    )
    stack.vendor.review_after = 0.0
    vendor = KycVendorClient.from_settings(stack.settings, timeout=5.0)
    doc = await kyc_documents.upload(
        stack.engine,
        vendor,
        kim.id,
        level_name="basic",
        id_doc_type="PASSPORT",
        country="GB",
        filename="p.jpg",
        content_type="image/jpeg",
        content=b"\xff\xd8 scan",
        max_bytes=1000,
    )
    sid, _, applicant = await kyc.tier2_submission(stack.engine, kim.id)
    assert sid == doc.submission_id
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)),
        data_converter=pydantic_data_converter,
    )
    try:
        await search_attributes.ensure_registered(env.client, "default")
        deps = Dependencies(settings=stack.settings, engine=stack.engine, adapters={}, kyc_vendor=vendor)
        spec = build(deps)[task_queues.KYC]
        queue = f"kyc-ts-{uuid.uuid4()}"
        async with Worker(
            env.client, task_queue=queue, workflows=list(spec.workflows), activities=list(spec.activities)
        ):
            result = await env.client.execute_workflow(
                KYCWorkflow.run,
                KycInput(
                    submission_id=sid,
                    user_id=kim.id,
                    tier=2,
                    applicant_id=applicant,
                    vendor_poll_seconds=60,
                    resubmit_timeout_seconds=30 * 24 * 3600,
                ),
                id=kyc_workflow_id(sid),
                task_queue=queue,
            )
    finally:
        await env.shutdown()
        await vendor.close()
    assert result.status == "EXPIRED"
    assert result.vendor is not None and result.vendor.reject_type == "RETRY"
    row = await submission(stack, sid)
    assert row.status == "EXPIRED"
    # Mail goes through the notification outbox: wait for it to be delivered.
    subjects = [m["subject"] for m in await mails_once(stack, kim.email, "expired")]
    assert any("resubmit" in s for s in subjects) and any("expired" in s for s in subjects)


async def test_a_vendor_that_never_answers_expires_the_check_with_a_bounded_history(stack: Stack) -> None:
    """No webhook and no review for 14 days (skipped): it keeps asking, ever less often, then EXPIRED."""
    pat = await make_user(stack, tier=1)
    stack.vendor.review_after = 10**9  # the vendor never completes the review
    vendor = KycVendorClient.from_settings(stack.settings, timeout=5.0)
    await kyc_documents.upload(
        stack.engine,
        vendor,
        pat.id,
        level_name="basic",
        id_doc_type="PASSPORT",
        country="GB",
        filename="p.jpg",
        content_type="image/jpeg",
        content=b"\xff\xd8 scan",
        max_bytes=1000,
    )
    sid, _, applicant = await kyc.tier2_submission(stack.engine, pat.id)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)),
        data_converter=pydantic_data_converter,
    )
    try:
        await search_attributes.ensure_registered(env.client, "default")
        deps = Dependencies(settings=stack.settings, engine=stack.engine, adapters={}, kyc_vendor=vendor)
        spec = build(deps)[task_queues.KYC]
        queue = f"kyc-ts-{uuid.uuid4()}"
        async with Worker(
            env.client, task_queue=queue, workflows=list(spec.workflows), activities=list(spec.activities)
        ):
            handle = await env.client.start_workflow(
                KYCWorkflow.run,
                KycInput(
                    submission_id=sid,
                    user_id=pat.id,
                    tier=2,
                    applicant_id=applicant,
                    vendor_poll_seconds=60,
                    vendor_timeout_seconds=14 * 24 * 3600,
                ),
                id=kyc_workflow_id(sid),
                task_queue=queue,
            )
            result = await handle.result()
            history = await handle.fetch_history()
    finally:
        await env.shutdown()
        await vendor.close()
    assert result.status == "EXPIRED"
    assert (await submission(stack, sid)).status == "EXPIRED"
    polls = sum(
        1
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "kyc.vendor_review"
    )
    assert 10 < polls < 120, polls  # it kept asking, ever less often (60 s doubling to 6 h over 14 days)
    assert await tier(stack, pat.id) == 1


async def _history(client: Client, workflow_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id).fetch_history()


async def test_recorded_kyc_histories_replay_with_the_current_code(stack: Stack) -> None:
    """Every KYC history of this run (and at least one tier-1 and one RETRY-then-GREEN tier-2) replays."""
    lee = await make_user(stack)
    async with stack.http() as c:
        r = await c.post("/api/v1/kyc/tier1", json=TIER1, headers=lee.headers())
    assert r.status_code == 202
    first = r.json()["id"]
    await wait_status(stack, first, "APPROVED")
    await stack.control(
        "POST",
        "/_control/outcomes",
        json={
            "externalUserId": str(lee.id),
            "outcomes": [{"reviewAnswer": "RED", "reviewRejectType": "RETRY"}, {"reviewAnswer": "GREEN"}],
        },
    )
    await upload_passport(stack, lee)
    second = (await submit_tier2(stack, lee))["id"]
    await wait_status(stack, second, "RESUBMIT_REQUESTED")
    await upload_passport(stack, lee)
    await submit_tier2(stack, lee)
    await wait_status(stack, second, "APPROVED")
    for wid in (kyc_workflow_id(first), kyc_workflow_id(second)):
        await stack.client.get_workflow_handle(wid).result()
    ids = {kyc_workflow_id(first), kyc_workflow_id(second)}
    # Every other KYC history of this run too, as far as visibility (eventually consistent) lists it.
    async for wf in stack.client.list_workflows("WorkflowType = 'KYCWorkflow'"):
        ids.add(wf.id)
    histories = [await _history(stack.client, wid) for wid in sorted(ids)]
    replayer = Replayer(workflows=[KYCWorkflow], data_converter=pydantic_data_converter)
    for history in histories:
        result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
        assert result.replay_failure is None, (history.workflow_id, result.replay_failure)
    assert len(histories) >= 2

"""The KYC review screen in a real browser: a tier-3 submission (source of funds and evidence) goes through
the real KYC saga to compliance's queue; a compliance officer reads it there and decides it with their TOTP
code, through the saga's `review` update with a decision token; the tier is granted. Staff without the
compliance role see no screen (403)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
from sqlalchemy import text
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.worker import Worker

from models.kyc import KycInput, KycStatus, Tier3In
from providers.email import EmailSender
from services import kyc
from temporal import search_attributes as sa
from temporal import task_queues
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack, make_user
from workers.registry import Dependencies, build
from workflows.kyc import KYCWorkflow, kyc_workflow_id

QUESTIONNAIRE = Tier3In(
    source_of_funds="employment",
    occupation="Structural engineer",
    employer="Bridges Ltd",
    annual_income_gbp="85000.00",
    expected_annual_deposits_gbp="30000.00",
    explanation="Monthly savings from my salary, paid into my Barclays account.",
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def kyc_worker(stack: Stack) -> AsyncIterator[None]:
    """The KYC saga's worker, as `workers.registry` builds it (tier 3 needs no vendor)."""
    deps = Dependencies(
        settings=stack.settings,
        engine=stack.engine,
        adapters={},
        email=EmailSender.from_settings(stack.settings),
    )
    spec = build(deps)[task_queues.KYC]
    worker = Worker(
        stack.client,
        task_queue=task_queues.KYC,
        workflows=list(spec.workflows),
        activities=list(spec.activities),
    )
    run = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        await worker.shutdown()
        await asyncio.gather(run, return_exceptions=True)


async def _status(stack: Stack, submission_id: uuid.UUID) -> str:
    async with stack.engine.connect() as conn:
        return str(
            (
                await conn.execute(
                    text("SELECT status FROM kyc_submissions WHERE id = :id"), {"id": submission_id}
                )
            ).scalar_one()
        )


async def _wait_status(stack: Stack, submission_id: uuid.UUID, status: KycStatus) -> None:
    for _ in range(300):
        if await _status(stack, submission_id) == status.value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"submission {submission_id} never reached {status}: {await _status(stack, submission_id)}"
    )


async def _tier3_in_review(stack: Stack) -> tuple[uuid.UUID, uuid.UUID]:
    """A tier-2 customer's tier-3 submission, recorded and started as the API does, waiting for compliance."""
    customer = await make_user(stack, tier=2)
    submission_id = await kyc.submit_tier3(
        stack.engine, customer.id, QUESTIONNAIRE,
        [kyc.Evidence(filename="payslip.pdf", content_type="application/pdf", content=b"%PDF-1.7 payslip")],
        max_bytes=stack.settings.kyc_document_max_bytes,
    )  # fmt: skip
    await stack.client.start_workflow(
        KYCWorkflow.run,
        KycInput(submission_id=submission_id, user_id=customer.id, tier=3),
        id=kyc_workflow_id(submission_id),
        task_queue=task_queues.KYC,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(sa.CUSTOMER_ID, str(customer.id)),
                SearchAttributePair(sa.KYC_STATUS, KycStatus.PENDING.value),
                SearchAttributePair(sa.KYC_TIER, 3),
            ]
        ),
    )
    await _wait_status(stack, submission_id, KycStatus.IN_REVIEW)
    return customer.id, submission_id


async def test_a_kyc_case_is_decided_in_the_console_with_totp(
    stack: Stack, console: Console, kyc_worker: None
) -> None:
    customer_id, submission_id = await _tier3_in_review(stack)
    officer = await make_staff(stack, ["compliance"])
    # A possible sanctions match as the screening service records it, with its explanation.
    match = {
        "source": "uk_sanctions", "entity_id": "UK-123", "name": "A Customre", "score": 88,
        "explanation": "'A Customer' is one transposition from listed alias 'A Customre'; no birth date",
    }  # fmt: skip
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO aml_checks (id, user_id, check_type, provider, result, risk_score, details) "
                "VALUES (:id, :u, 'SANCTIONS', 'internal', 'HIT', 88, CAST(:d AS jsonb))"
            ),
            {"id": uuid.uuid4(), "u": customer_id, "d": json.dumps({"matches": [match], "dismissed": []})},
        )

    page = await console.login(officer)
    await page.click("nav >> text=KYC review")
    case = page.locator(f"#kyc-{submission_id}")
    await case.wait_for()
    shown = await case.inner_text()
    assert "Structural engineer" in shown and "payslip.pdf" in shown and str(customer_id) in shown
    assert "Screening matches (1)" in shown and "one transposition from listed alias" in shown
    link = await case.locator("a.workflow").get_attribute("href")
    assert link == f"http://127.0.0.1:8233/namespaces/default/workflows/kyc-{submission_id}"
    await console.shot(page, "kyc-review")

    await case.locator("select.decision").select_option("approve")
    await case.locator("input.reason").fill("payslips match the declared income")
    await case.locator("input.totp").fill(officer.next_code())
    await case.locator("button.decide").click()
    await case.locator(".decided-notice", has_text="Decision accepted: approved").wait_for()
    await console.shot(page, "kyc-decided")

    await _wait_status(stack, submission_id, KycStatus.APPROVED)
    await page.reload()
    await page.locator("h1", has_text="KYC review").wait_for()
    assert await page.locator(f"#kyc-{submission_id}").count() == 0, "a recorded decision leaves the queue"
    async with stack.engine.connect() as conn:
        tier = (
            await conn.execute(text("SELECT kyc_tier FROM users WHERE id = :u"), {"u": customer_id})
        ).scalar_one()
    assert tier == 3


async def test_a_decision_without_the_totp_code_changes_nothing(
    stack: Stack, console: Console, kyc_worker: None
) -> None:
    _, submission_id = await _tier3_in_review(stack)
    officer = await make_staff(stack, ["compliance"])
    page = await console.login(officer)
    await page.goto(console.url("/kyc"))
    case = page.locator(f"#kyc-{submission_id}")
    await case.locator("input.reason").fill("looks fine")
    await case.locator("input.totp").fill("000000" if officer.next_code() != "000000" else "111111")
    await case.locator("button.decide").click()
    alert = page.locator("#flash [role=alert]")
    await alert.wait_for()
    assert "totp" in (await alert.inner_text()).lower()
    await console.shot(page, "kyc-refused")
    assert await _status(stack, submission_id) == KycStatus.IN_REVIEW.value


async def test_ops_staff_get_403_and_no_kyc_screen(stack: Stack, console: Console) -> None:
    ops = await make_staff(stack, ["ops"])
    page = await console.login(ops)
    assert await page.locator("nav >> text=KYC review").count() == 0
    response = await page.goto(console.url("/kyc"))
    assert response is not None and response.status == 403
    await console.shot(page, "kyc-forbidden")

"""The durable timers of the GDPR sagas on the time-skipping server: five years after closure the retention
saga pseudonymises the customer's personal data (and not a day before), with every ledger entry untouched
and every hash chain still verifying; an export's zip is erased when its link's lifetime ends. Both
histories replay."""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
from sqlalchemy import text
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.gdpr import GdprActivities
from models.gdpr import ExportInput, ExportResult, ExportStatus, RetentionResult, retention_workflow_id
from providers.email import EmailSender
from services import gdpr_closure, gdpr_links, gdpr_requests
from services.gdpr_retention import pseudonymous_email
from tests.gdpr.conftest import Stack, make_user, pay_in_and_out
from workers.registry import gdpr_activities
from workflows.gdpr import GdprExportWorkflow, RetentionWorkflow, TemporalRetentionSagas, start_export

FIVE_YEARS = timedelta(days=5 * 365)


@pytest_asyncio.fixture(loop_scope="session")
async def skipping(stack: Stack, temporal_client: Client) -> AsyncIterator[tuple[WorkflowEnvironment, str]]:
    """A time-skipping server per test (its clock starts at the wall clock the database uses, ~0.1 s to
    start) with a worker running the GDPR sagas."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=shutil.which("temporal-test-server", path=str(Path(sys.executable).parent)),
        data_converter=temporal_client.data_converter,
    )
    queue = f"test-gdpr-skip-{uuid.uuid4()}"
    activities = GdprActivities(engine=stack.engine, settings=stack.settings, email=None)
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[GdprExportWorkflow, RetentionWorkflow],
            activities=gdpr_activities(activities),
        ):
            yield env, queue
    finally:
        await env.shutdown()


async def _personal_records(stack: Stack, user_id: uuid.UUID) -> None:
    submission = uuid.uuid4()
    async with stack.engine.begin() as conn:
        for sql, params in [
            (
                "INSERT INTO kyc_submissions (id, user_id, tier, status, provider, details, "
                "document_front_url) "
                "VALUES (:id, :u, 1, 'APPROVED', 'internal', CAST(:d AS jsonb), 'https://vendor/doc/1')",
                {
                    "id": submission,
                    "u": user_id,
                    "d": json.dumps(
                        {"first_name": "Ada", "last_name": "Quartermaine", "address": {"line1": "1 High St"}}
                    ),
                },
            ),
            (
                "INSERT INTO kyc_evidence (id, submission_id, filename, content_type, sha256, content) "
                "VALUES (:id, :s, 'payslip.pdf', 'application/pdf', :h, :c)",
                {"id": uuid.uuid4(), "s": submission, "h": "0" * 64, "c": b"%PDF payslip of Ada"},
            ),
            (
                "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, status) "
                "VALUES (:id, :u, 'ADA QUARTERMAINE', '040004', '12345678', 'CONFIRMED')",
                {"id": uuid.uuid4(), "u": user_id},
            ),
            (
                "INSERT INTO deposits (id, user_id, currency, amount, status, provider, provider_tx_id, "
                "details) "
                "VALUES (:id, :u, 'GBP', 20, 'CONFIRMED', 'bank', :tx, CAST(:d AS jsonb))",
                {
                    "id": uuid.uuid4(),
                    "u": user_id,
                    "tx": uuid.uuid4().hex,
                    "d": json.dumps({"payer_name": "ADA QUARTERMAINE", "payer_account_number": "12345678"}),
                },
            ),
        ]:
            await conn.execute(text(sql), cast(dict[str, Any], params))


async def _stored_bytes(stack: Stack, request_id: uuid.UUID) -> int:
    """How much of the export's zip is still stored (0: erased)."""
    async with stack.engine.connect() as conn:
        size = (
            await conn.execute(
                text("SELECT octet_length(content) FROM gdpr_export_requests WHERE id = :id"),
                {"id": request_id},
            )
        ).scalar()
    return int(size or 0)


async def _ledger_rows(stack: Stack, user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    async with stack.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.id, e.transaction_id, e.seq, e.amount, e.balance_after, e.reference_id, e.hash "
                "FROM ledger_entries e JOIN accounts a ON a.id = e.account_id WHERE a.user_id = :u "
                "ORDER BY e.seq"
            ),
            {"u": user_id},
        )
        return [tuple(r) for r in rows]


async def _person_row(stack: Stack, user_id: uuid.UUID) -> Any:
    async with stack.engine.connect() as conn:
        return (
            await conn.execute(
                text(
                    "SELECT u.email, u.first_name, u.last_name, u.phone, u.password_hash, "
                    "(SELECT details FROM kyc_submissions WHERE user_id = u.id) AS kyc, "
                    "(SELECT document_front_url FROM kyc_submissions WHERE user_id = u.id) AS doc, "
                    "(SELECT e.content FROM kyc_evidence e "
                    " JOIN kyc_submissions s ON s.id = e.submission_id "
                    " WHERE s.user_id = u.id) AS evidence, "
                    "(SELECT holder_name || ' ' || account_number FROM bank_accounts "
                    " WHERE user_id = u.id) AS bank, "
                    "(SELECT details FROM deposits WHERE user_id = u.id) AS deposit, "
                    "(SELECT string_agg(coalesce(ip, '-') || coalesce(user_agent, '-'), ',') "
                    " FROM auth_sessions"
                    " WHERE user_id = u.id) AS sessions, "
                    "(SELECT pseudonymised_at FROM account_closures WHERE user_id = u.id) AS done "
                    "FROM users u WHERE u.id = :u"
                ),
                {"u": user_id},
            )
        ).one()


async def test_five_years_after_closure_personal_data_is_pseudonymised_and_the_ledger_still_verifies(
    stack: Stack, skipping: tuple[WorkflowEnvironment, str]
) -> None:
    env, queue = skipping
    person = await make_user(stack)
    await pay_in_and_out(stack, person.id, "20.00", out="20.00")
    await _personal_records(stack, person.id)
    ledger_before = await _ledger_rows(stack, person.id)
    assert len(ledger_before) == 2

    await gdpr_closure.close_account(
        stack.engine,
        person.id,
        sagas=TemporalRetentionSagas(env.client, queue),
        retention_years=5,
        ip="10.18.4.1",
        now=datetime.now(UTC),
    )
    handle = env.client.get_workflow_handle(retention_workflow_id(person.id), result_type=RetentionResult)

    await env.sleep(FIVE_YEARS - timedelta(days=2))  # a day and more before the fifth anniversary
    early = await _person_row(stack, person.id)
    assert early.email == person.email and early.first_name == "Ada" and early.done is None

    # (A handle not returned by the start does not skip time by itself: the test moves the clock.)
    await env.sleep(timedelta(days=4))  # past the fifth anniversary: the timer fires
    result = await handle.result()
    assert result.pseudonymised and result.rows_changed >= 6

    after = await _person_row(stack, person.id)
    assert after.email == pseudonymous_email(person.id)
    assert (after.first_name, after.last_name, after.phone) == (None, None, None)
    assert after.password_hash == "!pseudonymised"
    assert after.kyc == {"pseudonymised": True} and after.doc is None and after.evidence == b""
    assert after.bank == "pseudonymised ******78"
    assert after.deposit == {}
    assert after.sessions == "--"
    assert after.done is not None
    # The business record: every entry as it was, and every chain in the database still verifies.
    assert await _ledger_rows(stack, person.id) == ledger_before
    report = await stack.ledger.verify()
    assert report.ok, report.first_problem
    async with stack.engine.connect() as conn:
        actions = (
            (
                await conn.execute(
                    text(
                        "SELECT action FROM audit_log WHERE target_id = :t AND action LIKE 'account.%' "
                        "ORDER BY created_at"
                    ),
                    {"t": str(person.id)},
                )
            )
            .scalars()
            .all()
        )
    assert list(actions) == ["account.closed", "account.pseudonymised"]

    await Replayer(workflows=[RetentionWorkflow], data_converter=env.client.data_converter).replay_workflow(
        await handle.fetch_history()
    )


async def test_a_retention_saga_without_a_committed_closure_changes_nothing(
    stack: Stack, skipping: tuple[WorkflowEnvironment, str]
) -> None:
    """The saga starts before the closure commits; if the commit never happens, its timer finds no closure."""
    env, queue = skipping
    person = await make_user(stack)
    await TemporalRetentionSagas(env.client, queue).start_retention(person.id, datetime.now(UTC) + FIVE_YEARS)
    await env.sleep(FIVE_YEARS + timedelta(days=2))
    result = await env.client.get_workflow_handle(
        retention_workflow_id(person.id), result_type=RetentionResult
    ).result()
    assert not result.pseudonymised
    assert (await _person_row(stack, person.id)).email == person.email


async def test_an_export_is_erased_when_its_link_lifetime_ends(
    stack: Stack, skipping: tuple[WorkflowEnvironment, str]
) -> None:
    env, queue = skipping
    person = await make_user(stack)
    export = await gdpr_requests.request_export(stack.engine, person.id, now=datetime.now(UTC))
    await start_export(env.client, ExportInput(request_id=export.id, user_id=person.id), queue)
    handle = env.client.get_workflow_handle(export.workflow_id, result_type=ExportResult)

    await env.sleep(timedelta(minutes=30))  # within the link's hour: the zip is there
    (listed,) = await gdpr_requests.list_requests(stack.engine, person.id)
    assert listed.status == ExportStatus.READY
    assert await _stored_bytes(stack, export.id) > 0

    await env.sleep(timedelta(minutes=31))  # the hour ends
    outcome = await handle.result()
    assert outcome.status == ExportStatus.EXPIRED
    assert await _stored_bytes(stack, export.id) == 0
    (listed,) = await gdpr_requests.list_requests(stack.engine, person.id)
    assert listed.status == ExportStatus.EXPIRED
    now = datetime.now(UTC)
    token = gdpr_links.link_token(
        stack.settings, export.id, person.id, now=now, expires_at=now + timedelta(hours=1)
    )
    with pytest.raises(gdpr_links.ExportLinkExpired):
        await gdpr_requests.open_download(stack.engine, stack.settings, export.id, person.id, token, now=now)

    await Replayer(workflows=[GdprExportWorkflow], data_converter=env.client.data_converter).replay_workflow(
        await handle.fetch_history()
    )


async def test_an_export_whose_email_is_refused_for_hours_is_still_deleted_on_time(
    stack: Stack, skipping: tuple[WorkflowEnvironment, str]
) -> None:
    """SendGrid refuses every send (here: a revoked API key, a 401): the saga stops trying after its
    attempts and the file still goes when the link's lifetime ends."""
    env, _ = skipping
    refused = EmailSender("SG.revoked-key", host=stack.mail_url, sender="noreply@broker.example")
    queue = f"test-gdpr-refused-{uuid.uuid4()}"
    person = await make_user(stack)
    export = await gdpr_requests.request_export(stack.engine, person.id, now=datetime.now(UTC))
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[GdprExportWorkflow],
        activities=gdpr_activities(
            GdprActivities(engine=stack.engine, settings=stack.settings, email=refused)
        ),
    ):
        await start_export(env.client, ExportInput(request_id=export.id, user_id=person.id), queue)
        handle = env.client.get_workflow_handle(export.workflow_id, result_type=ExportResult)
        await env.sleep(timedelta(hours=12))  # the email's tries (about six hours) and the link's hour
        outcome = await handle.result()
    assert outcome.status == ExportStatus.EXPIRED
    assert await _stored_bytes(stack, export.id) == 0
    async with stack.engine.connect() as conn:
        emailed = (
            await conn.execute(
                text("SELECT emailed_at FROM gdpr_export_requests WHERE id = :id"), {"id": export.id}
            )
        ).scalar_one()
    assert emailed is None
    assert await stack.mail_to(person.email) == []

"""The AML case screen in a real browser: a case opened by a live alert, taken and annotated by one
compliance officer; the customer frozen by a SAR saga decision; the freeze lifted only by two different
officers (one asks, another confirms), each step with a TOTP code. Staff without the compliance role
see no screen (403)."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.aml import AmlRuleVersion, RuleHit
from services.aml import freeze
from services.aml.alerts import record_alerts
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack, make_user


async def _open_case(stack: Stack, user_id: uuid.UUID) -> uuid.UUID:
    """A case for the customer, opened by a live alert as monitoring opens it."""
    async with AsyncSession(stack.engine, expire_on_commit=False) as session:
        version = (
            await session.exec(
                select(AmlRuleVersion)
                .where(col(AmlRuleVersion.status) == "published", col(AmlRuleVersion.mode) == "live")
                .order_by(col(AmlRuleVersion.published_at))
                .limit(1)
            )
        ).one()
        case = await record_alerts(
            session,
            user_id=user_id,
            subject_type="customer",
            subject_id=str(user_id),
            hits=[RuleHit(rule_code="value_24h", score=30, details={"total_gbp": "12000.00"})],
            rule_version=version,
        )
        await session.commit()
    assert case is not None
    return case.id


async def test_a_case_is_worked_and_a_freeze_lifted_by_two_officers_in_the_console(
    stack: Stack, console: Console
) -> None:
    customer = await make_user(stack, tier=3)
    case_id = await _open_case(stack, customer.id)
    investigator, asker, confirmer = (
        await make_staff(stack, ["compliance"]), await make_staff(stack, ["compliance"]),
        await make_staff(stack, ["compliance"]),
    )  # fmt: skip

    page = await console.login(investigator)
    await page.click("nav >> text=AML cases")
    await page.locator(f"#case-{case_id} a").first.click()
    await page.locator("#take-form input[name=totp_code]").fill(investigator.next_code())
    await page.click("#take")
    await page.locator("#assignee", has_text=str(investigator.id)).wait_for()
    await page.fill("#note-body", "deposits from three new payers in one day; asked for statements")
    await page.locator("#note-form input[name=totp_code]").fill(investigator.next_code())
    await page.click("#add-note")
    await page.locator("#notes", has_text="asked for statements").wait_for()
    link = await page.get_attribute("#case-workflow", "href")
    assert link == f"http://127.0.0.1:8233/namespaces/default/workflows/sar-{case_id}"
    await console.shot(page, "aml-case")

    # The freeze is a decision of the case's SAR saga (on the ops worker), signed after the TOTP check.
    page = await console.login(asker)
    await page.goto(console.url(f"/aml/cases/{case_id}"))
    await page.select_option("#decision-form select[name=kind]", "freeze")
    await page.fill("#decision-form input[name=reason]", "funds of unclear origin pending statements")
    await page.locator("#decision-form input[name=totp_code]").fill(asker.next_code())
    async with page.expect_navigation():  # the answer reloads the page (HX-Refresh): wait for it
        async with page.expect_response(lambda r: r.url.endswith("/decision")) as answer:
            await page.click("#decision-form button")
        assert (await answer.value).status == 200
    for _ in range(200):
        async with stack.engine.connect() as conn:
            if await freeze.is_frozen(conn, customer.id):
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the SAR saga never froze the customer")
    await page.goto(console.url(f"/aml/cases/{case_id}"))  # the page as it is now
    await page.locator("#unfreeze-request input[name=totp_code]").fill(asker.next_code())
    await page.click("#unfreeze-request button")
    await page.locator("#unfreeze-wait").wait_for()
    async with stack.engine.connect() as conn:
        assert await freeze.is_frozen(conn, customer.id), "one person alone never lifts a freeze"
    await console.shot(page, "aml-unfreeze-requested")

    page = await console.login(confirmer)
    await page.goto(console.url(f"/aml/cases/{case_id}"))
    await page.locator("#unfreeze-confirm input[name=totp_code]").fill(confirmer.next_code())
    await page.click("#unfreeze-confirm button")
    await page.locator("#freeze", has_text="not frozen").wait_for()
    await console.shot(page, "aml-unfrozen")
    async with stack.engine.connect() as conn:
        assert not await freeze.is_frozen(conn, customer.id)
        lifted = (
            await conn.execute(
                text("SELECT unfreeze_requested_by, lifted_by FROM aml_freezes WHERE user_id = :u"),
                {"u": customer.id},
            )
        ).one()
    assert tuple(lifted) == (asker.id, confirmer.id)


async def test_support_staff_get_403_and_no_aml_screen(stack: Stack, console: Console) -> None:
    support = await make_staff(stack, ["support"])
    page = await console.login(support)
    assert await page.locator("nav >> text=AML cases").count() == 0
    response = await page.goto(console.url("/aml"))
    assert response is not None and response.status == 403
    await console.shot(page, "aml-forbidden")

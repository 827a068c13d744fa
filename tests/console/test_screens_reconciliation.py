"""The reconciliation screen in a real browser: a run with its unmatched items, and a currency the
reconciliation halted resumed by two different ops staff, each with a reason and their TOTP code (the
service `reconciliation.acknowledge`); one person alone never resumes it, and staff without the role see
no form."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio
from sqlalchemy import text

from services.reconciliation import customer_message
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack

CURRENCY = "BNB"  # the halt stops this currency's withdrawals while the test runs; none are made here


@pytest_asyncio.fixture(loop_scope="session")
async def halted(stack: Stack) -> AsyncIterator[uuid.UUID]:
    """A run that found BNB short at the venue, and the halt it set, already followed by two clean runs
    (what the resume needs); the halt is removed afterwards whatever the test did."""
    run_id = uuid.uuid4()
    why = "BNB: venues hold 0.50000000 less than the books (tolerance 0.00000100)"
    details: dict[str, Any] = {
        "trigger": "schedule",
        "reasons": [why],
        "unmatched_fills": [
            {"venue": "binance", "trade_id": "bn-778812", "symbol": "BNB-GBP", "amount": "0.5"}
        ],
        "in_flight_items": [],
        "missing_on_chain": [],
        "deposits_without_chain_tx": [],
        "halted": True,
    }
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO reconciliation_runs (id, run_id, currency, cut_off, provider_balance, "
                "ledger_balance, in_flight, discrepancy, status, details) "
                "VALUES (:id, :r, :c, :cut, 9.5, 10, 0, -0.5, 'DISCREPANCY', CAST(:d AS jsonb))"
            ),
            {
                "id": uuid.uuid4(),
                "r": run_id,
                "c": CURRENCY,
                "cut": datetime.now(UTC),
                "d": json.dumps(details),
            },
        )
        await conn.execute(
            text(
                "INSERT INTO reconciliation_halts (currency, run_id, reasons, clean_runs) "
                "VALUES (:c, :r, :why, 2)"
            ),
            {"c": CURRENCY, "r": run_id, "why": why},
        )
        await conn.execute(
            text("INSERT INTO currency_halts (currency, reason) VALUES (:c, :why)"),
            {"c": CURRENCY, "why": customer_message(CURRENCY)},
        )
    try:
        yield run_id
    finally:
        async with stack.engine.begin() as conn:
            await conn.execute(text("DELETE FROM reconciliation_halts WHERE currency = :c"), {"c": CURRENCY})
            await conn.execute(
                text("DELETE FROM currency_halts WHERE currency = :c AND reason = :r"),
                {"c": CURRENCY, "r": customer_message(CURRENCY)},
            )


async def _halt_rows(stack: Stack) -> tuple[int, int]:
    async with stack.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM reconciliation_halts WHERE currency = :c), "
                    "(SELECT count(*) FROM currency_halts WHERE currency = :c)"
                ),
                {"c": CURRENCY},
            )
        ).one()
    return int(row[0]), int(row[1])


async def test_a_reconciliation_halt_is_resumed_by_two_people_in_the_console(
    stack: Stack, console: Console, halted: uuid.UUID
) -> None:
    first, second = await make_staff(stack, ["ops"]), await make_staff(stack, ["ops"])

    page = await console.login(first)
    await page.click("nav >> text=Reconciliation")
    halt = page.locator(f"#halt-{CURRENCY}")
    await halt.wait_for()
    assert "2 / 2" in await halt.inner_text()
    await console.shot(page, "reconciliation")
    # The run behind it, with its unmatched fill and its saga in the Temporal Web UI.
    await halt.locator(f"a[href='/console/reconciliation/runs/{halted}']").click()
    await page.locator(f"#run-{CURRENCY}").wait_for()
    assert "bn-778812" in await page.inner_text(f"#run-{CURRENCY}")
    link = await page.get_attribute("#run-workflow", "href")
    assert link == f"http://127.0.0.1:8233/namespaces/default/workflows/reconciliation-{halted}"
    await console.shot(page, "reconciliation-run")

    await page.goto(console.url("/reconciliation"))
    await halt.locator("input[name=reason]").fill("BNB shortfall explained: fee booked late by Binance")
    await halt.locator("input[name=totp_code]").fill(first.next_code())
    await halt.locator("button.acknowledge").click()
    await halt.locator(".acks", has_text=first.email).wait_for()
    assert "a second person must" in await halt.inner_text()
    assert await halt.locator("button.acknowledge").count() == 0, "one person never acknowledges twice"
    assert await _halt_rows(stack) == (1, 1), "one person alone does not resume"
    await console.shot(page, "reconciliation-one-ack")

    page = await console.login(second)
    await page.goto(console.url("/reconciliation"))
    halt = page.locator(f"#halt-{CURRENCY}")
    await halt.locator("input[name=reason]").fill("checked the Binance statement: matches")
    await halt.locator("input[name=totp_code]").fill(second.next_code())
    await halt.locator("button.acknowledge").click()
    await page.locator("#recon-halts", has_text="No currency is halted").wait_for()
    await console.shot(page, "reconciliation-resumed")
    assert await _halt_rows(stack) == (0, 0)
    async with stack.engine.connect() as conn:
        actions = (
            await conn.execute(
                text(
                    "SELECT action, actor_id FROM audit_log WHERE target_type = 'currency' "
                    "AND target_id = :c AND details->>'run_id' = :r ORDER BY seq"
                ),
                {"c": CURRENCY, "r": str(halted)},
            )
        ).all()
    assert [tuple(a) for a in actions] == [
        ("reconciliation.resume_ack", first.id),
        ("reconciliation.resume_ack", second.id),
        ("reconciliation.resume", second.id),
    ]


async def test_support_staff_see_no_reconciliation_screen_and_get_403(stack: Stack, console: Console) -> None:
    support = await make_staff(stack, ["support"])
    page = await console.login(support)
    assert await page.locator("nav >> text=Reconciliation").count() == 0
    response = await page.goto(console.url("/reconciliation"))
    assert response is not None and response.status == 403
    assert "reconciliation.view" in await page.inner_text("#error-detail")
    await console.shot(page, "reconciliation-forbidden")


async def test_compliance_sees_the_halt_but_no_acknowledge_form(
    stack: Stack, console: Console, halted: uuid.UUID
) -> None:
    officer = await make_staff(stack, ["compliance"])  # may view reconciliation, may not resume it
    page = await console.login(officer)
    await page.goto(console.url("/reconciliation"))
    await page.locator(f"#halt-{CURRENCY}").wait_for()
    assert await page.locator(f"#halt-{CURRENCY} button.acknowledge").count() == 0
    # Even a well-formed post with the session's CSRF token is refused without the permission.
    csrf = json.loads(await page.get_attribute("body", "hx-headers") or "{}")["X-CSRF-Token"]
    r = await page.context.request.post(
        console.url(f"/reconciliation/halts/{CURRENCY}/acknowledge"),
        form={"reason": "not mine to resume", "totp_code": officer.next_code()},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status == 403 and "reconciliation.resume" in await r.text()
    assert await _halt_rows(stack) == (1, 1)

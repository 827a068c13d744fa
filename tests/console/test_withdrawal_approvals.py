"""Withdrawal approvals in the console: four eyes, a TOTP code per decision, in a real browser."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import text

from api.sagas import start_withdrawal
from models.payments import WithdrawalInput
from services import payments
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack, balance, deposit_gbp, make_user, wait_for


async def _withdrawal_needing_two_approvals(stack: Stack) -> tuple[uuid.UUID, uuid.UUID]:
    """A customer's £1,000 GBP withdrawal waiting for two approvers (a policy with a low dual threshold,
    started straight on the saga as tests/payments does), and the customer's id."""
    customer = await make_user(stack)
    account_id = uuid.uuid4()
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, verified, "
                "status, usable_from) VALUES (:id, :u, 'A Customer', '112233', :n, true, 'CONFIRMED', "
                "now() - interval '1 day')"
            ),
            {"id": account_id, "u": customer.id, "n": f"{uuid.uuid4().int % 10**8:08d}"},
        )
    await deposit_gbp(stack, customer, "3000.00")
    wid = uuid.uuid4()
    accepted = await payments.accept_withdrawal(
        stack.engine,
        withdrawal_id=wid,
        user_id=customer.id,
        currency="GBP",
        amount=Decimal("1000.00"),
        price_gbp=None,
        address_id=None,
        bank_account_id=account_id,
        policy=payments.WithdrawalPolicy(Decimal("500"), Decimal("900"), {"GBP": Decimal("0.50")}),
        crypto_provider="binance",
    )
    assert accepted.approvals_required == 2
    await start_withdrawal(
        stack.client,
        WithdrawalInput(
            withdrawal_id=wid,
            user_id=customer.id,
            currency="GBP",
            amount=Decimal("1000.00"),
            fee=accepted.fee,
            notional_gbp=accepted.notional_gbp,
            destination=accepted.destination,
            provider=accepted.provider,
            approvals_required=accepted.approvals_required,
        ),
    )

    async def waiting() -> bool:
        return any(w.id == wid for w in await payments.approval_queue(stack.engine))

    await wait_for(waiting)
    return wid, customer.id


async def _status(stack: Stack, wid: uuid.UUID) -> str:
    async with stack.engine.connect() as conn:
        return str(
            (await conn.execute(text("SELECT status FROM withdrawals WHERE id = :w"), {"w": wid})).one()[0]
        )


async def test_two_approvers_approve_a_withdrawal_each_with_a_totp_code(
    stack: Stack, console: Console
) -> None:
    wid, customer_id = await _withdrawal_needing_two_approvals(stack)
    first, second = await make_staff(stack, ["approver"]), await make_staff(stack, ["approver"])

    page = await console.login(first)
    await page.goto(console.url("/withdrawals"))
    row = page.locator(f"#w-{wid}")
    assert "0 of 2" in await row.locator(".approvals").inner_text()
    link = await row.locator("a").get_attribute("href")
    assert link == f"http://127.0.0.1:8233/namespaces/default/workflows/withdrawal-{wid}"
    await console.shot(page, "withdrawals")
    # A wrong code is refused and nothing is counted.
    await row.locator(".totp").fill("000000" if first.totp and first.totp.now() != "000000" else "111111")
    await row.locator(".approve").click()
    await page.locator("#flash [role=alert]").wait_for()
    assert "not valid" in await page.inner_text("#flash")
    await row.locator(".totp").fill(first.next_code())
    await row.locator(".reason").fill("source of funds checked")
    await row.locator(".approve").click()
    await page.locator("#notice").wait_for()
    assert "approval_recorded" in await page.inner_text("#notice")
    assert "1 of 2" in await page.locator(f"#w-{wid} .approvals").inner_text()
    # The same approver again does not make it two.
    await page.locator(f"#w-{wid} .totp").fill(first.next_code())
    async with page.expect_response(lambda r: r.url.endswith(f"{wid}/approve")) as answer:
        await page.locator(f"#w-{wid} .approve").click()
    assert (await answer.value).status == 200
    await page.locator("#notice").wait_for()
    assert "1 of 2" in await page.locator(f"#w-{wid} .approvals").inner_text()
    assert await _status(stack, wid) == "AWAITING_APPROVAL"
    await console.shot(page, "withdrawals-one-approval")

    other = await console.login(second)
    await other.goto(console.url("/withdrawals"))
    await other.locator(f"#w-{wid} .totp").fill(second.next_code())
    await other.locator(f"#w-{wid} .approve").click()
    await other.locator("#notice").wait_for()
    assert "approved" in await other.inner_text("#notice")

    async def completed() -> bool:
        return await _status(stack, wid) == "COMPLETED"

    await wait_for(completed)
    assert await balance(stack, customer_id, "GBP") == (Decimal("1999.50"), Decimal(0))
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT actor_id, ip, details->>'outcome' FROM audit_log "
                    "WHERE action = 'staff.withdrawal.approve' AND target_id = :w ORDER BY seq"
                ),
                {"w": str(wid)},
            )
        ).all()
    assert [(r[0], r[2]) for r in rows] == [
        (first.id, "approval_recorded"),
        (first.id, "approval_recorded"),
        (second.id, "approved"),
    ]
    assert all(r[1] == "127.0.0.1" for r in rows)


async def test_support_sees_the_queue_without_buttons_and_is_refused_a_decision(
    stack: Stack, console: Console
) -> None:
    wid, _ = await _withdrawal_needing_two_approvals(stack)
    support = await make_staff(stack, ["support"])
    page = await console.login(support)
    await page.goto(console.url("/withdrawals"))
    await page.locator(f"#w-{wid}").wait_for()
    assert await page.locator(f"#w-{wid} .approve").count() == 0
    assert await page.locator("header nav a", has_text="Staff").count() == 0
    await console.shot(page, "withdrawals-support")
    # Posting the decision anyway (with the page's own CSRF token) is a 403.
    csrf = await page.locator("body").get_attribute("hx-headers")
    assert csrf
    token = csrf.split('"')[3]
    r = await page.request.post(
        console.url(f"/withdrawals/{wid}/approve"),
        form={"totp_code": support.next_code(), "csrf_token": token},
    )
    assert r.status == 403
    assert "withdrawal.decide" in await r.text()
    assert await _status(stack, wid) == "AWAITING_APPROVAL"
    answer = await page.goto(console.url("/staff"))
    assert answer is not None and answer.status == 403
    await console.shot(page, "forbidden")


async def test_an_approver_rejects_with_a_reason_and_the_funds_come_back(
    stack: Stack, console: Console
) -> None:
    wid, customer_id = await _withdrawal_needing_two_approvals(stack)
    approver = await make_staff(stack, ["approver"])
    page = await console.login(approver)
    await page.goto(console.url("/withdrawals"))
    row = page.locator(f"#w-{wid}")
    await row.locator(".totp").fill(approver.next_code())
    await row.locator(".reason").fill("unusual pattern")
    async with page.expect_response(lambda r: f"{wid}/" in r.url and r.request.method == "POST") as answer:
        await row.locator(".reject").click()
    assert (await answer.value).url.endswith("/reject")
    await page.locator("#notice").wait_for()
    assert "rejected" in await page.inner_text("#notice")

    async def rejected() -> bool:
        return await _status(stack, wid) == "REJECTED"

    await wait_for(rejected)
    assert await balance(stack, customer_id, "GBP") == (Decimal("3000.00"), Decimal(0))
    async with stack.engine.connect() as conn:
        actions = (
            await conn.execute(
                text("SELECT action FROM audit_log WHERE target_id = :w AND action LIKE 'staff.%'"),
                {"w": str(wid)},
            )
        ).scalars()
        assert list(actions) == ["staff.withdrawal.reject"]

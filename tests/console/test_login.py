"""Staff sign in to the console with password and TOTP, in a real browser; customers never get in."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from services import payments
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack, make_user


async def test_staff_log_in_with_totp_and_see_the_dashboard(stack: Stack, console: Console) -> None:
    ops = await make_staff(stack, ["ops"])
    await payments.set_halt(stack.engine, "ETH", "node maintenance", ops.id, "staff")
    try:
        page = await console.login(ops)
        assert ops.email in await page.inner_text("#who")
        assert await page.inner_text("#health-postgres") == "PostgreSQL\nok"
        assert await page.inner_text("#health-temporal") == "Temporal\nok"
        assert "node maintenance" in await page.locator("#halts tr", has_text="ETH").inner_text()
        venues = await page.inner_text("#venues")
        assert "binance" in venues and "closed" in venues
        await console.shot(page, "dashboard")
        session = {c["name"]: c for c in await page.context.cookies()}["broker_console"]
        assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
        await page.click("#logout")
        await page.wait_for_url(console.url("/login"))
        # The old cookie again: the session itself is over, not only the cookie gone.
        await page.context.add_cookies(
            [{"name": "broker_console", "value": session["value"], "domain": "127.0.0.1", "path": "/console"}]
        )
        await page.goto(console.url(""))
        assert page.url == console.url("/login")
        async with httpx.AsyncClient(
            base_url=stack.api_url, follow_redirects=False, cookies={"broker_console": session["value"]}
        ) as c:
            assert (await c.get("/console")).status_code == 303
    finally:
        await payments.lift_halt(stack.engine, "ETH", ops.id, "staff")
    async with stack.engine.connect() as conn:
        actions = (
            await conn.execute(
                text("SELECT action, actor_type FROM audit_log WHERE actor_id = :u ORDER BY seq"),
                {"u": ops.id},
            )
        ).all()
    assert ("staff.login", "staff") in actions and ("staff.logout", "staff") in actions


async def test_a_wrong_totp_code_is_refused(stack: Stack, console: Console) -> None:
    ops = await make_staff(stack, ["ops"])
    page = await console.page()
    await page.goto(console.url("/login"))
    await page.fill("#email", ops.email)
    await page.fill("#password", ops.password)
    await page.fill("#totp_code", "000000" if ops.next_code() != "000000" else "111111")
    await console.shot(page, "login")
    await page.click("#login")
    alert = page.locator("#flash [role=alert]")
    await alert.wait_for()
    assert "not valid" in await alert.inner_text()
    await console.shot(page, "login-refused")
    assert page.url == console.url("/login")


async def test_a_customer_cannot_reach_the_console(stack: Stack, console: Console) -> None:
    customer = await make_user(stack, roles=[])
    async with httpx.AsyncClient(base_url=stack.api_url, follow_redirects=False) as c:
        r = await c.get("/console", headers={"Authorization": f"Bearer {customer.token}"})
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        login_page = await c.get("/console/login")
        assert login_page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in login_page.headers["content-security-policy"]
        assert "content-security-policy" not in (await c.get("/healthz")).headers
    async with httpx.AsyncClient(
        base_url=stack.api_url, follow_redirects=False, cookies={"broker_console": customer.token}
    ) as c:
        r = await c.get("/console")
        assert r.status_code == 303
    # The customer's own password does not open a console session either.
    page = await console.page()
    await page.goto(console.url("/login"))
    await page.fill("#email", customer.email)
    await page.fill("#password", "Correct-Horse-9-battery")
    await page.fill("#totp_code", customer.next_code())
    await page.click("#login")
    alert = page.locator("#flash [role=alert]")
    await alert.wait_for()
    assert "incorrect" in await alert.inner_text()
    assert not [c for c in await page.context.cookies() if c["name"] == "broker_console"]

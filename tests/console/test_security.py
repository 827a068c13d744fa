"""The console's guards: forged CSRF tokens, addresses outside the staff allowlist, the audit chain's
verification (and a tampered row found), and /docs working without the internet."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import httpx
from playwright.async_api import Route
from sqlalchemy import text

from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack, make_user


async def test_a_forged_or_missing_csrf_token_is_refused(stack: Stack, console: Console) -> None:
    admin = await make_staff(stack, ["admin"])
    victim = await make_staff(stack, ["ops"])
    page = await console.login(admin)
    await page.goto(console.url("/staff"))
    target = console.url(f"/staff/{victim.id}/disable")
    forged = await page.request.post(target, form={"csrf_token": "forged-" + uuid.uuid4().hex})
    assert forged.status == 403 and (await forged.json())["code"] == "csrf_invalid"
    missing = await page.request.post(target)
    assert missing.status == 403 and (await missing.json())["code"] == "csrf_invalid"
    wrong_header = await page.request.post(target, headers={"X-CSRF-Token": "x" * 43})
    assert wrong_header.status == 403
    # The page's own form (its token in hx-headers and the form) works.
    await page.evaluate(
        "document.body.setAttribute('hx-headers', JSON.stringify({'X-CSRF-Token': 'tampered'}))"
    )
    page.on("dialog", lambda dialog: dialog.accept())
    await page.locator(f"#s-{victim.id} .disable").click()
    await page.locator("#flash [role=alert]").wait_for()
    assert "csrf_invalid" in await page.inner_text("#flash")
    await console.shot(page, "csrf-refused")
    async with stack.engine.connect() as conn:
        status = (
            await conn.execute(text("SELECT status FROM users WHERE id = :u"), {"u": victim.id})
        ).scalar()
        refused = (
            await conn.execute(
                text("SELECT count(*) FROM audit_log WHERE actor_id = :u AND action = 'staff.csrf_refused'"),
                {"u": admin.id},
            )
        ).scalar()
    assert status == "ACTIVE" and refused == 4
    # A forged login form (no matching double-submit cookie) is refused as well.
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        r = await c.post(
            "/console/login",
            data={
                "email": victim.email,
                "password": victim.password,
                "totp_code": "123456",
                "csrf_token": "x",
            },
        )
    assert r.status_code == 403 and r.json()["code"] == "csrf_invalid"


async def test_staff_routes_refuse_an_address_outside_the_allowlist(stack: Stack) -> None:
    approver = await make_user(stack, roles=["approver"])
    outside = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=stack.api_url, transport=outside) as c:
        for path in ("/console/login", "/console", "/console/static/htmx.min.js"):
            r = await c.get(path)
            assert r.status_code == 403 and r.json()["code"] == "address_not_allowed", path
        r = await c.get(
            "/api/v1/admin/withdrawals/pending", headers={"Authorization": f"Bearer {approver.token}"}
        )
        assert r.status_code == 403 and r.json()["code"] == "address_not_allowed"
        assert (await c.get("/healthz")).status_code == 200  # customers' routes are not restricted
    async with httpx.AsyncClient(base_url=stack.api_url) as c:
        assert (await c.get("/console/login")).status_code == 200
        r = await c.get(
            "/api/v1/admin/withdrawals/pending", headers={"Authorization": f"Bearer {approver.token}"}
        )
        assert r.status_code == 200


async def test_the_audit_chain_verifies_and_a_tampered_row_is_found(stack: Stack, console: Console) -> None:
    compliance = await make_staff(stack, ["compliance"])
    page = await console.login(compliance)
    await page.goto(console.url(f"/audit?actor={compliance.email}"))
    assert "staff.login" in await page.inner_text("#audit-rows")
    await console.shot(page, "audit")
    await page.click("#verify-chain")
    await page.locator("#chain-ok").wait_for()
    await console.shot(page, "audit-verified")

    async with stack.engine.connect() as conn:
        seq, row_id, details = (
            await conn.execute(
                text("SELECT seq, id, details FROM audit_log WHERE actor_id = :u ORDER BY seq LIMIT 1"),
                {"u": compliance.id},
            )
        ).one()
    async with stack.engine.begin() as conn:
        # Past the append-only trigger, as only a superuser could: change what the row says.
        await conn.execute(text("SET LOCAL session_replication_role = replica"))
        await conn.execute(
            text("UPDATE audit_log SET details = CAST(:d AS jsonb) WHERE id = :i"),
            {"d": '{"session_id": "someone else"}', "i": row_id},
        )
    try:
        await page.click("#verify-chain")
        broken = page.locator("#chain-broken")
        await broken.wait_for()
        assert f"#{seq}" in await broken.inner_text() and str(row_id) in await broken.inner_text()
        await console.shot(page, "audit-tampered")
    finally:
        async with stack.engine.begin() as conn:
            await conn.execute(text("SET LOCAL session_replication_role = replica"))
            await conn.execute(
                text("UPDATE audit_log SET details = CAST(:d AS jsonb) WHERE id = :i"),
                {"d": json.dumps(details), "i": row_id},
            )
    await page.click("#verify-chain")
    await page.locator("#chain-ok").wait_for()


async def test_an_ops_member_sees_the_audit_log_but_no_verify_button(stack: Stack, console: Console) -> None:
    ops = await make_staff(stack, ["ops"])
    page = await console.login(ops)
    await page.goto(console.url("/audit"))
    assert await page.locator("#verify-chain").count() == 0
    token = (await page.locator("body").get_attribute("hx-headers") or "").split('"')[3]
    r = await page.request.post(console.url("/audit/verify"), headers={"X-CSRF-Token": token})
    assert r.status == 403


async def test_docs_load_with_every_asset_served_by_us(stack: Stack, console: Console) -> None:
    page = await console.page()
    elsewhere: list[str] = []
    api_host = urlsplit(stack.api_url).netloc

    async def only_local(route: Route) -> None:
        if urlsplit(route.request.url).netloc != api_host:
            elsewhere.append(route.request.url)
            await route.abort()
        else:
            await route.continue_()

    await page.route("**/*", only_local)
    await page.goto(f"{stack.api_url}/docs")
    await page.locator(".swagger-ui .info .title", has_text="Broker API").wait_for()
    await page.locator(".opblock-tag", has_text="admin").first.wait_for()
    await console.shot(page, "docs")
    assert elsewhere == []

"""Staff management by an admin, TOTP enrolment at first login, idle timeout, the permission matrix."""

from __future__ import annotations

import pyotp
from sqlalchemy import text

from tests.console.conftest import Console, make_staff
from tests.payments.conftest import PASSWORD, Stack


async def _audit(stack: Stack, target: object) -> list[tuple[str, object, dict[str, object] | None]]:
    async with stack.engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT action, actor_id, details FROM audit_log WHERE target_id = :t ORDER BY seq"),
                {"t": str(target)},
            )
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


async def test_an_admin_creates_staff_who_enrol_totp_at_first_login(stack: Stack, console: Console) -> None:
    admin = await make_staff(stack, ["admin"])
    page = await console.login(admin)
    await page.goto(console.url("/staff"))
    email = f"new-{admin.id.hex[:8]}@broker.example"
    form = page.locator("#create-staff")
    await form.locator("[name=email]").fill(email)
    await form.locator("[name=first_name]").fill("Nina")
    await form.locator("[name=password]").fill(PASSWORD)
    await form.locator("[value=support]").check()
    await form.locator("button").click()
    await page.locator("#notice").wait_for()
    assert email in await page.inner_text("#staff-table")
    await console.shot(page, "staff")
    async with stack.engine.connect() as conn:
        new_id, roles, twofa = (
            await conn.execute(
                text("SELECT id, roles, twofa_enabled FROM users WHERE email = :e"), {"e": email}
            )
        ).one()
    assert roles == ["support"] and twofa is False
    [(action, actor, details)] = await _audit(stack, new_id)
    assert action == "staff.account.created" and actor == admin.id
    assert details == {"email": email, "before": None, "after": {"roles": ["support"]}}

    # First login: password, then the enrolment step with the new key, then the dashboard.
    newcomer = await console.page()
    await newcomer.goto(console.url("/login"))
    await newcomer.fill("#email", email)
    await newcomer.fill("#password", PASSWORD)
    await newcomer.click("#login")
    secret = (await newcomer.locator("#totp-secret").inner_text()).strip()
    await console.shot(newcomer, "enrol")
    await newcomer.fill("#code", pyotp.TOTP(secret).now())
    await newcomer.click("#enrol")
    await newcomer.wait_for_url(console.url(""))
    assert email in await newcomer.inner_text("#who")
    # Support sees no admin screens in the navigation.
    assert await newcomer.locator("header nav a", has_text="Staff").count() == 0

    # The admin gives them the approver role instead: their session ends at once.
    row = page.locator(f"#s-{new_id}")
    await row.locator("[value=support]").uncheck()
    await row.locator("[value=approver]").check()
    await row.locator(".save-roles").click()
    await page.locator("#notice", has_text="Roles saved").wait_for()
    await newcomer.reload()
    assert newcomer.url == console.url("/login")

    # Reset their TOTP, then disable them.
    page.on("dialog", lambda dialog: dialog.accept())
    await page.locator(f"#s-{new_id} .reset-totp").click()
    await page.locator("#notice", has_text="reset-totp").wait_for()
    await page.locator(f"#s-{new_id} .disable").click()
    await page.locator("#notice", has_text="disable").wait_for()
    assert "SUSPENDED" in await page.locator(f"#s-{new_id}").inner_text()
    actions = [a for a, _, _ in await _audit(stack, new_id)]
    assert actions[-3:] == ["staff.account.roles_set", "staff.account.totp_reset", "staff.account.disabled"]
    roles_set = (await _audit(stack, new_id))[-3][2]
    assert roles_set == {"before": {"roles": ["support"]}, "after": {"roles": ["approver"]}}
    # A disabled member cannot log in.
    again = await console.page()
    await again.goto(console.url("/login"))
    await again.fill("#email", email)
    await again.fill("#password", PASSWORD)
    await again.click("#login")
    await again.locator("#flash [role=alert]").wait_for()
    assert "incorrect" in await again.inner_text("#flash")


async def test_an_admin_cannot_change_their_own_roles(stack: Stack, console: Console) -> None:
    admin = await make_staff(stack, ["admin"])
    page = await console.login(admin)
    await page.goto(console.url("/staff"))
    row = page.locator(f"#s-{admin.id}")
    await row.locator("[value=approver]").check()
    await row.locator(".save-roles").click()
    await page.locator("#flash [role=alert]").wait_for()
    assert "own_account" in await page.inner_text("#flash")
    async with stack.engine.connect() as conn:
        roles = (await conn.execute(text("SELECT roles FROM users WHERE id = :u"), {"u": admin.id})).scalar()
    assert roles == ["admin"]


async def test_an_idle_session_ends_and_so_does_an_old_one(stack: Stack, console: Console) -> None:
    ops = await make_staff(stack, ["ops"])
    page = await console.login(ops)
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE staff_sessions SET last_seen_at = now() - interval '16 minutes' WHERE user_id = :u"),
            {"u": ops.id},
        )
    await page.reload()
    assert page.url == console.url("/login")
    async with stack.engine.connect() as conn:
        revoked = (
            await conn.execute(
                text("SELECT count(*) FROM staff_sessions WHERE user_id = :u AND revoked_at IS NOT NULL"),
                {"u": ops.id},
            )
        ).scalar()
        timed_out = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log WHERE actor_id = :u "
                    "AND action = 'staff.session.idle_timeout'"
                ),
                {"u": ops.id},
            )
        ).scalar()
    assert revoked == 1 and timed_out == 1
    # A busy session still ends at its absolute lifetime (CONSOLE_SESSION_MAX_SECONDS).
    page = await console.login(ops)
    async with stack.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE staff_sessions SET expires_at = now() - interval '1 second' "
                "WHERE user_id = :u AND revoked_at IS NULL"
            ),
            {"u": ops.id},
        )
    await page.reload()
    assert page.url == console.url("/login")


async def test_the_permission_matrix_page_shows_what_the_code_enforces(
    stack: Stack, console: Console
) -> None:
    admin = await make_staff(stack, ["admin"])
    page = await console.login(admin)
    await page.goto(console.url("/permissions"))
    matrix = page.locator("#matrix")
    header = await matrix.locator("tr").first.inner_text()
    for role in ("support", "approver", "ops", "compliance", "admin"):
        assert role in header
    decide = await matrix.locator("tr", has_text="withdrawal.decide").locator("td").all_inner_texts()
    assert [cell.strip() for cell in decide[1:]] == ["", "✓", "", "", ""]
    await console.shot(page, "permissions")


async def test_the_staff_list_survives_a_totp_secret_sealed_under_a_retired_key(
    stack: Stack, console: Console
) -> None:
    """Listing staff never decrypts their TOTP secrets: one that no current key opens (sealed before a key
    rotation) must not take the page down for everyone (it did: a 500 for /console/staff)."""
    admin = await make_staff(stack, ["admin"])
    stale = await make_staff(stack, ["support"])
    async with stack.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET twofa_secret = :s WHERE id = :u"),
            {"s": "gAAAAABretired-key-" + "x" * 80, "u": stale.id},
        )
    page = await console.login(admin)
    response = await page.goto(console.url("/staff"))
    assert response is not None and response.status == 200
    assert stale.email in await page.inner_text("#staff-table")

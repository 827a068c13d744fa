"""The reusable dependencies other routes build on: roles, mandatory 2FA, verified email, withdrawal limit."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth_deps import RequireTotp, VerifiedUser, require_role
from api.ratelimit import RateLimits, WithdrawalRateLimit
from config import Settings
from models.users import User
from tests.api.conftest import (
    TEST_LIMITS,
    AppClient,
    assert_problem,
    bearer,
    build_app,
    enable_2fa,
    login,
    register,
)


def _app_with_guarded_routes(settings: Settings, limits: RateLimits = TEST_LIMITS) -> Any:
    app = build_app(settings, rate_limits=limits)
    router = APIRouter(prefix="/api/v1/test")

    @router.get("/staff")
    async def staff(user: User = Depends(require_role("approver"))) -> dict[str, str]:
        return {"email": user.email}

    @router.post("/withdraw", dependencies=[WithdrawalRateLimit, RequireTotp])
    async def withdraw(user: VerifiedUser) -> dict[str, str]:
        return {"ok": user.email}

    app.include_router(router)
    return app


async def test_require_role(app_client: AppClient, api_settings: Settings, engine: AsyncEngine) -> None:
    async with app_client(app=_app_with_guarded_routes(api_settings)) as client:
        customer = await register(client)
        staff = await register(client)
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE users SET roles = '{approver}' WHERE email = :e"), {"e": staff})
        assert_problem(await client.get("/api/v1/test/staff"), 401)
        r = await client.get("/api/v1/test/staff", headers=bearer(await login(client, customer)))
        assert_problem(r, 403, "forbidden")
        staff_tokens = await login(client, staff)
        r = await client.get("/api/v1/test/staff", headers=bearer(staff_tokens))
        assert_problem(r, 403, "totp_enrollment_required")  # a password alone opens no staff route
        await enable_2fa(client, staff_tokens)
        r = await client.get("/api/v1/test/staff", headers=bearer(staff_tokens))
        assert r.status_code == 200 and r.json() == {"email": staff}


async def test_mandatory_totp_verified_email_and_withdrawal_rate_limit(
    app_client: AppClient, api_settings: Settings, engine: AsyncEngine
) -> None:
    limits = RateLimits(anonymous_per_minute=1000, user_per_minute=1000, withdrawals_per_hour=3)
    withdraw = "/api/v1/test/withdraw"
    async with app_client(app=_app_with_guarded_routes(api_settings, limits)) as client:
        email = await register(client)
        tokens = await login(client, email)
        r = await client.post(withdraw, headers=bearer(tokens))
        assert_problem(r, 403, "totp_enrollment_required")  # withdrawals need 2FA, always

        _, (code, nxt) = await enable_2fa(client, tokens)
        assert_problem(await client.post(withdraw, headers=bearer(tokens)), 403, "totp_required")
        r = await client.post(withdraw, headers={**bearer(tokens), "X-TOTP-Code": code})
        assert_problem(r, 403, "email_not_verified")  # the code was good; the email is not verified yet
        r = await client.post(withdraw, headers={**bearer(tokens), "X-TOTP-Code": nxt})
        assert_problem(r, 429, "rate_limited")  # a fourth withdrawal request within the hour
        assert int(r.headers["retry-after"]) > 3000

    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET email_verified = true WHERE email = :e"), {"e": email})
        # An hour later (the window is shared by every API process, so a new app does not reset it).
        await conn.execute(
            text(
                "DELETE FROM rate_limit_windows WHERE key = "
                "(SELECT 'withdrawal:' || id::text FROM users WHERE email = :e)"
            ),
            {"e": email},
        )
    async with app_client(app=_app_with_guarded_routes(api_settings, limits)) as client:
        r = await client.post(withdraw, headers={**bearer(tokens), "X-TOTP-Code": nxt})
        assert r.status_code == 200 and r.json() == {"ok": email}
        r = await client.post(withdraw, headers={**bearer(tokens), "X-TOTP-Code": nxt})
        assert_problem(r, 403, "totp_replayed")

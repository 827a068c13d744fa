"""Manual ledger adjustments by maker-checker (`services.adjustments`), on the session's real PostgreSQL
and ledger: an ops proposal posts nothing; a different approver's approval posts one new balanced journal,
once, however often or concurrently it is approved; the maker can never approve; a rejection is kept;
bad amounts are a 422 through the admin API and store nothing; every step is in the audit log."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pyotp
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from api.main import create_app
from api.ratelimit import RateLimits
from config import Settings
from models import sealed
from models.adjustments import AdjustmentLeg, AdjustmentProposalIn, AdjustmentStatus
from services import adjustments
from services.ledger import House, HouseAccount, Ledger, Leg, Posting, verify_accounts
from services.passwords import hash_password
from tests.console.conftest import Console, make_staff
from tests.payments.conftest import Stack

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "Correct-Horse-9-battery"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(engine: AsyncEngine, settings: Settings) -> Ledger:
    return Ledger(engine, house_shards=settings.house_account_shards)


async def _user(engine: AsyncEngine, roles: list[str], *, totp_secret: str | None = None) -> uuid.UUID:
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (id, email, password_hash, kyc_tier, roles, email_verified) "
                "VALUES (:id, :e, :p, 3, :r, true)"
            ),
            {
                "id": user_id,
                "e": f"adj-{user_id.hex[:12]}@example.com",
                "p": hash_password(PASSWORD),
                "r": roles,
            },
        )
    return user_id


async def _funded_customer(ledger: Ledger, amount: str = "100.00") -> uuid.UUID:
    """A customer holding `amount` GBP, paid in from suspense (which also opens the house account)."""
    customer = await _user(ledger._engine, [])
    account = await ledger.customer_account(customer, "GBP")
    await ledger.post(
        Posting(
            reference_type="test_funding", reference_id=uuid.uuid4(), step="fund",
            legs=[
                Leg(House(HouseAccount.SUSPENSE), "GBP", -Decimal(amount)),
                Leg(account, "GBP", Decimal(amount)),
            ],
        )
    )  # fmt: skip
    return customer


def _proposal(customer: uuid.UUID, amount: str = "12.34", **kw: Any) -> AdjustmentProposalIn:
    """Credit the customer `amount` GBP from suspense."""
    return AdjustmentProposalIn(
        currency="GBP",
        legs=[
            AdjustmentLeg(user_id=customer, amount=amount),
            AdjustmentLeg(house=HouseAccount.SUSPENSE, amount=str(-Decimal(amount))),
        ],
        reason="bank credited £12.34 twice on 28 Nov; customer was short-paid (ticket OPS-17)",
        **kw,
    )


async def _journals(engine: AsyncEngine, adjustment_id: uuid.UUID) -> list[Any]:
    async with engine.connect() as conn:
        return list(
            (
                await conn.execute(
                    text(
                        "SELECT t.id, sum(e.amount) AS total, count(e.id) AS legs FROM ledger_transactions t "
                        "JOIN ledger_entries e ON e.transaction_id = t.id "
                        "WHERE t.reference_type = 'adjustment' AND t.reference_id = :id GROUP BY t.id"
                    ),
                    {"id": adjustment_id},
                )
            ).all()
        )


async def _audit(engine: AsyncEngine, adjustment_id: uuid.UUID) -> list[tuple[str, uuid.UUID | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT action, actor_id FROM audit_log WHERE target_type = 'ledger_adjustment' "
                "AND target_id = :id ORDER BY created_at, action"
            ),
            {"id": str(adjustment_id)},
        )
        return [(r[0], r[1]) for r in rows]


async def test_approval_by_another_staff_member_posts_one_balanced_journal_once(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    customer = await _funded_customer(ledger)
    maker, checker, second_checker = (
        await _user(engine, ["ops"]), await _user(engine, ["approver"]), await _user(engine, ["approver"])
    )  # fmt: skip
    proposed = await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer))
    assert proposed.status == AdjustmentStatus.PROPOSED
    assert await _journals(engine, proposed.id) == [], "a proposal alone posts nothing"
    assert (await ledger.balances(customer))[0].balance == Decimal("100.00")

    # Two approvals at once and one more afterwards: one journal, posted once.
    first, second = await asyncio.gather(
        adjustments.approve(engine, ledger, adjustment_id=proposed.id, checker_id=checker, reason="checked"),
        adjustments.approve(
            engine, ledger, adjustment_id=proposed.id, checker_id=second_checker, reason="ok"
        ),
    )
    again = await adjustments.approve(
        engine, ledger, adjustment_id=proposed.id, checker_id=checker, reason="x"
    )
    assert first.status == second.status == again.status == AdjustmentStatus.POSTED
    assert first.transaction_id == second.transaction_id == again.transaction_id is not None
    journals = await _journals(engine, proposed.id)
    assert len(journals) == 1
    assert journals[0].id == first.transaction_id and journals[0].total == 0 and journals[0].legs == 2
    assert (await ledger.balances(customer))[0].balance == Decimal("112.34")
    report = await verify_accounts(
        engine, [b.account_id for b in await ledger.balances(customer) if b.account_id]
    )
    assert report.ok and report.entries_checked == 2, report.first_problem
    assert sorted(await _audit(engine, proposed.id)) == [
        ("adjustment.posted", first.checker_id),
        ("adjustment.proposed", maker),
    ]


async def test_the_maker_cannot_approve_their_own_proposal_and_the_refusal_is_audited(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    customer = await _funded_customer(ledger)
    # Even a maker who also holds the approver role is not their own checker.
    maker = await _user(engine, ["ops", "approver"])
    proposed = await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer))
    with pytest.raises(adjustments.FourEyesRefused):
        await adjustments.approve(engine, ledger, adjustment_id=proposed.id, checker_id=maker, reason="mine")
    with pytest.raises(adjustments.FourEyesRefused):
        await adjustments.reject(engine, adjustment_id=proposed.id, checker_id=maker, reason="mine")
    assert (await adjustments.get(engine, proposed.id)).status == AdjustmentStatus.PROPOSED
    assert await _journals(engine, proposed.id) == []
    actions = await _audit(engine, proposed.id)
    assert ("adjustment.approve.refused", maker) in actions and (
        "adjustment.reject.refused",
        maker,
    ) in actions

    # Nor can ops without the approver role, nor the customer whose account it moves.
    ops_only = await _user(engine, ["ops"])
    with pytest.raises(adjustments.FourEyesRefused):
        await adjustments.approve(engine, ledger, adjustment_id=proposed.id, checker_id=ops_only, reason="x")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET roles = '{approver}' WHERE id = :u"), {"u": customer})
    with pytest.raises(adjustments.FourEyesRefused):
        await adjustments.approve(engine, ledger, adjustment_id=proposed.id, checker_id=customer, reason="x")
    assert await _journals(engine, proposed.id) == []

    # And the database itself refuses a row whose checker is its maker.
    with pytest.raises(Exception, match="ck_ledger_adjustments_four_eyes"):
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE ledger_adjustments SET status = 'REJECTED', checker_id = maker_id, "
                    "decided_at = now() WHERE id = :id"
                ),
                {"id": proposed.id},
            )


async def test_a_rejected_proposal_is_kept_and_never_posted(engine: AsyncEngine, ledger: Ledger) -> None:
    customer = await _funded_customer(ledger)
    maker, checker = await _user(engine, ["ops"]), await _user(engine, ["approver"])
    proposed = await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer))
    rejected = await adjustments.reject(engine, adjustment_id=proposed.id, checker_id=checker, reason="dup")
    assert rejected.status == AdjustmentStatus.REJECTED and rejected.checker_id == checker
    with pytest.raises(adjustments.AdjustmentDecided):
        await adjustments.approve(engine, ledger, adjustment_id=proposed.id, checker_id=checker, reason="x")
    assert await _journals(engine, proposed.id) == []
    kept = await adjustments.listing(engine, status=AdjustmentStatus.REJECTED)
    assert proposed.id in {a.id for a in kept}
    assert ("adjustment.rejected", checker) in await _audit(engine, proposed.id)


async def test_a_debit_the_customer_cannot_cover_leaves_the_proposal_open_and_the_books_untouched(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    customer = await _funded_customer(ledger, "5.00")
    maker, checker = await _user(engine, ["ops"]), await _user(engine, ["approver"])
    proposed = await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer, "-7.00"))
    with pytest.raises(Exception) as refused:
        await adjustments.approve(engine, ledger, adjustment_id=proposed.id, checker_id=checker, reason="x")
    assert getattr(refused.value, "code", None) == "insufficient_funds"
    assert (await adjustments.get(engine, proposed.id)).status == AdjustmentStatus.PROPOSED
    assert await _journals(engine, proposed.id) == []
    assert (await ledger.balances(customer))[0].balance == Decimal("5.00")
    assert [a for a, _ in await _audit(engine, proposed.id)] == ["adjustment.proposed"]


async def test_a_repeated_proposal_id_returns_the_first_and_a_different_one_is_refused(
    engine: AsyncEngine, ledger: Ledger
) -> None:
    customer = await _funded_customer(ledger)
    maker = await _user(engine, ["ops"])
    same_id = uuid.uuid4()
    first = await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer, id=same_id))
    again = await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer, id=same_id))
    assert again == first
    with pytest.raises(adjustments.AdjustmentDecided):
        await adjustments.propose(engine, maker_id=maker, proposal=_proposal(customer, "1.00", id=same_id))
    assert [a for a, _ in await _audit(engine, same_id)] == ["adjustment.proposed"]


# --- over HTTP: TOTP, roles and the 422s --------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def admin_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings,
        rate_limits=RateLimits(
            anonymous_per_minute=10_000, user_per_minute=10_000, withdrawals_per_hour=1_000
        ),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


class Staff:
    def __init__(self, user_id: uuid.UUID, token: str, totp: pyotp.TOTP) -> None:
        self.id, self.token, self.totp = user_id, token, totp

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-TOTP-Code": self.totp.at(time.time())}


async def _staff(engine: AsyncEngine, api: httpx.AsyncClient, roles: list[str]) -> Staff:
    user_id = await _user(engine, roles)
    r = await api.post(
        "/api/v1/auth/login", json={"email": f"adj-{user_id.hex[:12]}@example.com", "password": PASSWORD}
    )
    assert r.status_code == 200, r.text
    secret = pyotp.random_base32()
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET twofa_enabled = true, twofa_secret = :s WHERE id = :id"),
            {"s": sealed.seal(secret), "id": user_id},
        )
    return Staff(user_id, r.json()["access_token"], pyotp.TOTP(secret))


@pytest.mark.parametrize(
    ("amounts", "field"),
    [
        ((12.34, -12.34), "body.legs.0.amount"),  # JSON numbers: never a float near money
        (("12.345", "-12.345"), "body.legs.0.amount"),  # finer than pence: never rounded
        (("12.34", "-12.00"), "body.legs"),  # does not balance
        (("0", "0.00"), "body.legs.0.amount"),  # nothing to post
        (("1e3", "-1e3"), "body.legs.0.amount"),  # exponents are not amounts
    ],
)
async def test_bad_amounts_are_a_422_and_store_nothing(
    engine: AsyncEngine, ledger: Ledger, admin_api: httpx.AsyncClient, amounts: tuple[Any, Any], field: str
) -> None:
    customer = await _funded_customer(ledger)
    maker = await _staff(engine, admin_api, ["ops"])
    body = {
        "currency": "GBP",
        "legs": [
            {"user_id": str(customer), "amount": amounts[0]},
            {"house": "suspense", "amount": amounts[1]},
        ],
        "reason": "a correction with a bad amount",
    }
    r = await admin_api.post("/api/v1/admin/adjustments", json=body, headers=maker.headers())
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["errors"][0]["field"].startswith(field), problem
    async with engine.connect() as conn:
        mine = (
            await conn.execute(
                text("SELECT count(*) FROM ledger_adjustments WHERE maker_id = :m"), {"m": maker.id}
            )
        ).scalar_one()
    assert mine == 0


async def test_over_http_each_step_needs_its_role_and_totp_and_the_maker_gets_403(
    engine: AsyncEngine, ledger: Ledger, admin_api: httpx.AsyncClient
) -> None:
    customer = await _funded_customer(ledger)
    # The maker also holds the approver role: the role check passes, four eyes still refuses.
    maker = await _staff(engine, admin_api, ["ops", "approver"])
    checker = await _staff(engine, admin_api, ["approver"])
    body = {
        "currency": "GBP",
        "legs": [{"user_id": str(customer), "amount": "3.50"}, {"house": "suspense", "amount": "-3.50"}],
        "reason": "card refund booked to suspense by mistake",
    }
    r = await admin_api.post(
        "/api/v1/admin/adjustments", json=body, headers={"Authorization": f"Bearer {maker.token}"}
    )
    assert r.status_code == 403 and r.json()["code"] == "totp_required", r.text
    r = await admin_api.post("/api/v1/admin/adjustments", json=body, headers=checker.headers())
    assert r.status_code == 403 and r.json()["code"] == "forbidden", "an approver alone does not propose"
    into_step = time.time() % 30
    if into_step > 25:  # the maker uses this step's code and the next one: both inside the drift window
        await asyncio.sleep(30 - into_step + 0.1)
    now = time.time()
    r = await admin_api.post(
        "/api/v1/admin/adjustments", json=body,
        headers={"Authorization": f"Bearer {maker.token}", "X-TOTP-Code": maker.totp.at(now)},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    adjustment_id = r.json()["id"]
    assert r.json()["legs"][0]["amount"] == "3.50"
    r = await admin_api.post(
        f"/api/v1/admin/adjustments/{adjustment_id}/approve", json={"reason": "mine"},
        headers={"Authorization": f"Bearer {maker.token}", "X-TOTP-Code": maker.totp.at(now + 30)},
    )  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "four_eyes", r.text
    assert await _journals(engine, uuid.UUID(adjustment_id)) == []
    r = await admin_api.post(
        f"/api/v1/admin/adjustments/{adjustment_id}/approve", json={"reason": "matches the bank statement"},
        headers=checker.headers(),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "POSTED" and r.json()["checker_id"] == str(checker.id)
    assert len(await _journals(engine, uuid.UUID(adjustment_id))) == 1
    r = await admin_api.get("/api/v1/admin/adjustments", headers={"Authorization": f"Bearer {checker.token}"})
    assert r.status_code == 200 and adjustment_id in {a["id"] for a in r.json()}


# --- in the browser -----------------------------------------------------------------------------------


async def test_in_the_console_ops_propose_and_a_different_approver_approves_with_totp(
    stack: Stack, console: Console, ledger: Ledger
) -> None:
    customer = await _funded_customer(ledger, "40.00")
    email = f"adj-{customer.hex[:12]}@example.com"
    maker = await make_staff(stack, ["ops"])
    checker = await make_staff(stack, ["approver"])

    page = await console.login(maker)
    await page.click("nav >> text=Adjustments")
    await page.fill("#leg-account-0", email)
    await page.fill("#leg-amount-0", "25.00")
    await page.fill("#leg-account-1", "house:suspense")
    await page.fill("#leg-amount-1", "-25.00")
    await page.fill("#adj-reason", "refund of a duplicate card fee (ticket OPS-42)")
    await page.fill("#adj-totp", maker.next_code())
    await page.click("#propose")
    row = page.locator("#adjustments tr[data-status=PROPOSED]", has_text="OPS-42")
    await row.wait_for()
    await console.shot(page, "adjustments-proposed")
    adjustment_id = uuid.UUID((await row.get_attribute("id") or "").removeprefix("adj-"))
    assert await _journals(stack.engine, adjustment_id) == [], "nothing is posted before approval"
    # The maker has no approver role: no approvals page for them, and no link to it.
    assert await page.locator("nav >> text=Adjustment approvals").count() == 0
    response = await page.goto(console.url("/adjustments/approvals"))
    assert response is not None and response.status == 403
    await console.shot(page, "adjustments-approvals-forbidden")

    page = await console.login(checker)
    await page.click("nav >> text=Adjustment approvals")
    waiting = page.locator(f"#adj-{adjustment_id}")
    assert await page.locator("#propose").count() == 0, "an approver alone does not propose"
    await waiting.locator(".approve-form input[name=reason]").fill("matches the card processor's report")
    await waiting.locator(".approve-form input[name=totp_code]").fill(checker.next_code())
    await console.shot(page, "adjustments-approval")
    await waiting.locator("button.approve").click()
    await page.locator("#decided tr", has_text="OPS-42").wait_for()
    await console.shot(page, "adjustments-approved")
    assert await page.locator(f"#adj-{adjustment_id}").count() == 0

    journals = await _journals(stack.engine, adjustment_id)
    assert len(journals) == 1 and journals[0].total == 0
    assert (await ledger.balances(customer))[0].balance == Decimal("65.00")
    actions = await _audit(stack.engine, adjustment_id)
    assert ("adjustment.proposed", maker.id) in actions and ("adjustment.posted", checker.id) in actions


async def test_in_the_console_the_maker_sees_no_approve_button_on_their_own_proposal(
    stack: Stack, console: Console, ledger: Ledger
) -> None:
    customer = await _funded_customer(ledger)
    both = await make_staff(stack, ["ops", "approver"])
    await adjustments.propose(stack.engine, maker_id=both.id, proposal=_proposal(customer))
    page = await console.login(both)
    await page.goto(console.url("/adjustments/approvals"))
    mine = page.locator("#adjustments tr", has_text="ticket OPS-17").filter(has_text=str(both.id)).first
    await mine.wait_for()
    assert "another approver decides" in await mine.inner_text()
    assert await mine.locator("button.approve").count() == 0
    await console.shot(page, "adjustments-own-proposal")

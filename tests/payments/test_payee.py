"""Who can receive a customer's GBP withdrawals (issue 12 item 1).

Before: anyone who knew a customer's deposit reference could pay 1p under it; their account became the
customer's newest verified withdrawal account and the next withdrawal without an explicit account paid
the stranger. Now a payer account is only a candidate: its holder name is checked against the customer's
(Confirmation of Payee: match / close match / no match), the customer confirms it with TOTP (and is
emailed), it is usable after a cooling-off period, and a withdrawal always names its account.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from services.payee import NameMatch, check_payee
from tests.payments.conftest import Customer, Stack, deposit_gbp, make_user, wait_for

STRANGER = {"payer_name": "Mallory Evil", "payer_sort_code": "090128", "payer_account_number": "31926819"}


async def _reference(stack: Stack, customer: Customer) -> str:
    async with stack.http() as c:
        r = await c.get(
            "/api/v1/deposits/instructions", params={"currency": "GBP"}, headers=customer.headers()
        )
    assert r.status_code == 200, r.text
    return str(r.json()["reference"])


async def _accounts(stack: Stack, customer: Customer) -> dict[str, dict[str, Any]]:
    async with stack.http() as c:
        r = await c.get("/api/v1/bank-accounts", headers=customer.headers())
    assert r.status_code == 200, r.text
    return {a["account_number"]: a for a in r.json()}


async def _fresh_code_window(stack: Stack, customer: Customer) -> None:
    """As if a minute passed since the last code: each TOTP step is accepted once, and this test uses more
    codes than the drift window holds (TOTP replay itself is tested with auth)."""
    async with stack.engine.begin() as conn:
        await conn.execute(text("DELETE FROM totp_usage WHERE user_id = :u"), {"u": customer.id})
    customer.last_step = 0


async def _withdraw(stack: Stack, customer: Customer, **body: str) -> httpx.Response:
    await _fresh_code_window(stack, customer)
    async with stack.http() as c:
        return await c.post(
            "/api/v1/withdrawals",
            json={"currency": "GBP", "amount": "50.00", **body},
            headers=customer.headers(totp=True),
        )


async def _confirm(stack: Stack, customer: Customer, account_id: str, *, totp: bool = True) -> httpx.Response:
    await _fresh_code_window(stack, customer)
    async with stack.http() as c:
        return await c.post(
            f"/api/v1/bank-accounts/{account_id}/confirm", headers=customer.headers(totp=totp)
        )


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("holder", "expected"),
    [
        ("A CUSTOMER", NameMatch.MATCH),
        ("Customer, A.", NameMatch.MATCH),
        ("Mr John Smith", NameMatch.CLOSE_MATCH),  # vs "Jon Smith": a typo of one letter
        ("J Smith", NameMatch.CLOSE_MATCH),  # vs "Jon Smith": an initial
        ("Jane Smithers", NameMatch.NO_MATCH),
        ("Smith", NameMatch.NO_MATCH),  # a surname alone is not the customer
        ("Mallory Evil", NameMatch.NO_MATCH),
        ("", NameMatch.NO_MATCH),
    ],
)
def test_the_name_check_answers_as_confirmation_of_payee(holder: str, expected: NameMatch) -> None:
    customer = "A Customer" if "CUSTOMER" in holder.upper() else "Jon Smith"
    assert check_payee(holder, customer).result is expected
    assert check_payee("A Customer", "").result is NameMatch.NO_MATCH  # no name on file: ops review


async def test_a_strangers_payment_cannot_redirect_gbp_withdrawals(stack: Stack, database_url: str) -> None:
    customer = await make_user(stack)  # "A Customer", as the sandbox bank's default payer
    await deposit_gbp(stack, customer, "300.00")  # from the customer's own account
    reference = await _reference(stack, customer)
    own = next(iter((await _accounts(stack, customer)).values()))
    assert (own["status"], own["name_match"], own["usable_from"]) == ("UNCONFIRMED", "match", None)

    # A stranger who knows the reference pays 1p from their own account.
    sent = await stack.bank(
        "POST", "/_control/payments", json={"reference": reference, "amount": "0.01", **STRANGER}
    )

    async def stranger_recorded() -> dict[str, Any] | None:
        return (await _accounts(stack, customer)).get(STRANGER["payer_account_number"])

    theirs = await wait_for(stranger_recorded)
    assert (theirs["status"], theirs["name_match"]) == ("HELD_FOR_REVIEW", "no_match")
    async with stack.engine.connect() as conn:
        alert = (
            await conn.execute(
                text(
                    "SELECT details FROM audit_log WHERE action = 'ops.alert.payer_name_mismatch' "
                    "AND target_id = :t"
                ),
                {"t": theirs["id"]},
            )
        ).one()
    assert alert[0]["bank_tx_id"] == sent["bank_tx_id"] and "Mallory" not in str(alert[0])

    # No default destination, and neither account can be paid yet.
    r = await _withdraw(stack, customer)
    assert (r.status_code, r.json()["code"]) == (422, "bank_account_required"), r.text
    r = await _withdraw(stack, customer, bank_account_id=theirs["id"])
    assert (r.status_code, r.json()["code"]) == (422, "bank_account_held_for_review"), r.text
    r = await _withdraw(stack, customer, bank_account_id=own["id"])
    assert (r.status_code, r.json()["code"]) == (422, "bank_account_unconfirmed"), r.text

    # The customer cannot confirm the stranger's account; confirming needs TOTP.
    r = await _confirm(stack, customer, theirs["id"])
    assert (r.status_code, r.json()["code"]) == (409, "bank_account_held_for_review"), r.text
    r = await _confirm(stack, customer, own["id"], totp=False)
    assert r.status_code == 403, r.text
    assert (await _accounts(stack, customer))[own["account_number"]]["status"] == "UNCONFIRMED"

    # Confirmed with TOTP: emailed, usable after the cooling-off period.
    before = datetime.now(UTC)
    r = await _confirm(stack, customer, own["id"])
    assert r.status_code == 200, r.text
    usable_from = datetime.fromisoformat(r.json()["usable_from"])
    cooling_off = timedelta(seconds=stack.settings.bank_account_cooling_off_seconds)
    assert cooling_off == timedelta(hours=24)  # the production default
    assert before + cooling_off <= usable_from <= datetime.now(UTC) + cooling_off
    r = await _withdraw(stack, customer, bank_account_id=own["id"])
    assert (r.status_code, r.json()["code"]) == (422, "bank_account_cooling_down"), r.text

    async def mailed() -> bool:
        async with httpx.AsyncClient() as c:
            r = await c.get(f"{stack.mail_url}/messages", params={"to": customer.email})
            return any("bank account was added" in m.get("subject", "") for m in r.json())

    await wait_for(mailed)

    async with stack.engine.begin() as conn:  # a day later
        await conn.execute(
            text("UPDATE bank_accounts SET usable_from = now() - interval '1 minute' WHERE id = :id"),
            {"id": own["id"]},
        )
    r = await _withdraw(stack, customer, bank_account_id=own["id"])
    assert r.status_code == 201, r.text
    wid = r.json()["id"]

    async def completed() -> bool:
        async with stack.http() as c:
            got = await c.get(f"/api/v1/withdrawals/{wid}", headers=customer.headers())
        return bool(got.json()["status"] == "COMPLETED")

    await wait_for(completed)
    payouts = [p for p in stack.bank_state.payouts.values() if p.external_id == wid]
    assert [p.destination.get("account_number") for p in payouts] == [own["account_number"]]

    # Ops review the held account: rejected, it stays unusable for good.
    done = _cli(database_url, "review-bank-account", theirs["id"], "reject", "--reason", "not the customer")
    assert done.returncode == 0, done.stderr
    assert (await _accounts(stack, customer))[STRANGER["payer_account_number"]]["status"] == "REJECTED"
    r = await _confirm(stack, customer, theirs["id"])
    assert (r.status_code, r.json()["code"]) == (409, "bank_account_rejected"), r.text


async def test_a_close_match_is_confirmed_by_the_customer_and_a_held_one_after_ops_approve(
    stack: Stack, database_url: str
) -> None:
    customer = await make_user(stack)
    reference = await _reference(stack, customer)
    close = {"payer_name": "MR A CUSTOMERS", "payer_sort_code": "200000", "payer_account_number": "55779911"}
    joint = {"payer_name": "B Other", "payer_sort_code": "200000", "payer_account_number": "55779922"}
    for payer in (close, joint):
        await stack.bank(
            "POST", "/_control/payments", json={"reference": reference, "amount": "5.00", **payer}
        )

    async def both() -> dict[str, dict[str, Any]] | None:
        found = await _accounts(stack, customer)
        return found if len(found) == 2 else None

    accounts = await wait_for(both)
    near, other = accounts[close["payer_account_number"]], accounts[joint["payer_account_number"]]
    assert (near["status"], near["name_match"]) == ("UNCONFIRMED", "close_match")
    assert (other["status"], other["name_match"]) == ("HELD_FOR_REVIEW", "no_match")
    assert (await _confirm(stack, customer, near["id"])).status_code == 200

    done = _cli(
        database_url, "review-bank-account", other["id"], "approve", "--reason", "joint account, ID seen"
    )
    assert done.returncode == 0, done.stderr
    assert (await _accounts(stack, customer))[joint["payer_account_number"]]["status"] == "UNCONFIRMED"
    r = await _confirm(stack, customer, other["id"])  # ops approval does not skip the customer's TOTP
    assert r.status_code == 200 and r.json()["status"] == "CONFIRMED", r.text


async def test_an_account_trusted_before_the_name_check_is_checked_when_confirmed(stack: Stack) -> None:
    """Accounts recorded before migration 0012 were made verified with no name check (possibly by a
    stranger's payment); the migration left them UNCONFIRMED with no name result. Confirming checks now."""
    customer = await make_user(stack)
    legacy = {"Mallory Evil": "70000001", "A Customer": "70000002"}
    async with stack.engine.begin() as conn:
        for name, number in legacy.items():
            await conn.execute(
                text(
                    "INSERT INTO bank_accounts (id, user_id, holder_name, sort_code, account_number, "
                    "verified, verified_by) "
                    "VALUES (gen_random_uuid(), :u, :n, '300000', :a, true, 'inbound_payment')"
                ),
                {"u": customer.id, "n": name, "a": number},
            )
    accounts = await _accounts(stack, customer)
    theirs, own = accounts[legacy["Mallory Evil"]], accounts[legacy["A Customer"]]
    assert (theirs["status"], theirs["name_match"]) == ("UNCONFIRMED", None)

    r = await _confirm(stack, customer, theirs["id"])
    assert (r.status_code, r.json()["code"]) == (409, "bank_account_held_for_review"), r.text
    after = (await _accounts(stack, customer))[legacy["Mallory Evil"]]
    assert (after["status"], after["name_match"]) == ("HELD_FOR_REVIEW", "no_match")
    async with stack.engine.connect() as conn:
        alerts = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM audit_log "
                    "WHERE action = 'ops.alert.payer_name_mismatch' AND target_id = :t"
                ),
                {"t": theirs["id"]},
            )
        ).scalar_one()
    assert alerts == 1

    r = await _confirm(stack, customer, own["id"])
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["name_match"]) == ("CONFIRMED", "match")

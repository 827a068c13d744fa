"""The payments, treasury and reconciliation refusals are `DomainError`s: the API's one handler answers
each with its stable code and status in the problem-details shape (routes have no `except` for them), and
a refusal that means "not now" (503) says when to come back."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from api import errors
from services import payments
from services.errors import DomainError
from services.reconciliation import ResumeRefused
from services.treasury import TransferRefused

CASES = [
    (payments.WithdrawalRefused("withdrawal_limit_exceeded", "over your 24 h limit"), 422),
    (payments.WithdrawalRefused("price_unavailable", "no GBP price for BTC right now", 503), 503),
    (payments.WithdrawalRefused("unknown_user", "no such customer", 404), 404),
    (payments.BankAccountRefused("bank_account_rejected", "this account cannot receive withdrawals"), 409),
    (payments.HaltRefused("reconciliation_halt", "this halt needs two staff acknowledgements"), 409),
    (payments.AddressRefused("not_found", "no such address", 404), 404),
    (payments.DepositInstructionsUnavailable("bank_unavailable", "the bank is unavailable"), 503),
    (payments.NotFound("no such withdrawal"), 404),
    (TransferRefused("a transfer needs two different venues"), 409),
    (ResumeRefused("this staff member has already acknowledged this halt"), 409),
]


@pytest.mark.parametrize(("refusal", "status"), CASES, ids=lambda c: getattr(c, "code", str(c)))
async def test_each_refusal_is_answered_by_the_one_handler_with_its_code_and_status(
    refusal: DomainError, status: int
) -> None:
    app = FastAPI()
    errors.install(app)

    @app.get("/refuse")
    async def refuse() -> None:
        raise refusal

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/refuse")
    assert isinstance(refusal, DomainError)
    assert r.status_code == status
    assert r.headers["content-type"] == errors.PROBLEM_JSON
    problem = r.json()
    assert problem["code"] == refusal.code and problem["detail"] == refusal.detail
    assert problem["status"] == status and problem["instance"] == "/refuse"
    assert ("retry-after" in r.headers) == (status == 503)


def test_refusal_codes_are_stable() -> None:
    assert (TransferRefused("x").code, TransferRefused.status) == ("transfer_refused", 409)
    assert (ResumeRefused("x").code, ResumeRefused.status) == ("resume_refused", 409)
    assert payments.WithdrawalRefused("insufficient_funds", "x").reason == "x"

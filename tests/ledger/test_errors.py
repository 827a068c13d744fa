"""Ledger errors are domain errors: each has a stable code and the HTTP status the API answers with,
and the API's one handler turns them into problem details (a bug's detail never reaches a client)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from api import errors as api_errors
from services.errors import DomainError
from services.ledger import (
    CurrencyMismatch,
    HoldNotActive,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    LedgerError,
    UnbalancedPosting,
    UnknownAccount,
)

EXPECTED = [
    (InsufficientFunds, "insufficient_funds", 422),  # what POST /withdrawals answered before
    (HoldNotActive, "hold_not_active", 409),
    (UnknownAccount, "unknown_account", 404),
    (CurrencyMismatch, "currency_mismatch", 422),
    (InvalidAmount, "invalid_amount", 422),
    (IdempotencyConflict, "idempotency_conflict", 500),
    (UnbalancedPosting, "unbalanced_posting", 500),
]


@pytest.mark.parametrize(("cls", "code", "status"), EXPECTED)
def test_each_ledger_error_is_a_domain_error_with_a_stable_code_and_status(
    cls: type[LedgerError], code: str, status: int
) -> None:
    error = cls("why")
    assert isinstance(error, DomainError) and isinstance(error, LedgerError)
    assert (error.code, error.status, error.detail, str(error)) == (code, status, "why", "why")


def _app_raising(error: Exception) -> FastAPI:
    app = FastAPI()
    api_errors.install(app)

    @app.get("/raise")
    async def _raise() -> None:
        raise error

    return app


async def _get(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/raise")


async def test_a_ledger_refusal_reaches_the_client_as_problem_details() -> None:
    r = await _get(_app_raising(InsufficientFunds("available GBP does not cover 10.00")))
    assert r.status_code == 422
    assert r.headers["content-type"].startswith(api_errors.PROBLEM_JSON)
    body = r.json()
    assert body["code"] == "insufficient_funds"
    assert body["detail"] == "available GBP does not cover 10.00"


async def test_a_ledger_bug_is_a_500_that_does_not_show_its_detail() -> None:
    r = await _get(_app_raising(UnbalancedPosting("legs do not sum to zero: {'GBP': Decimal('0.01')}")))
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "unbalanced_posting"
    assert "legs" not in r.text and "GBP" not in r.text

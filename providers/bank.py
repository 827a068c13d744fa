"""The GBP bank rail (Modulr-like BaaS): customer references, payouts, and webhook verification.

Errors follow the exchange adapters' three kinds, because each needs a different reaction:
`BankRetryable` (nothing happened: retry), `BankRefused` (the bank said no: compensate) and
`BankAmbiguous` (we sent a payout and don't know whether it exists: ask with `find_payout`, never resend
blindly). Amounts cross as strings.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from config import Settings

SIGNATURE_HEADER = "X-Bank-Signature"
TIMESTAMP_HEADER = "X-Bank-Timestamp"
REPLAY_WINDOW_SECONDS = 300


class BankError(Exception):
    """Base of the bank errors."""


class BankRetryable(BankError):
    """The request did not take effect (network down before sending, 5xx, 429). Retry later."""


class BankRefused(BankError):
    """The bank refused the request (invalid destination, bad request). Don't retry; compensate."""


class BankAmbiguous(BankError):
    """A payout request was sent and no answer came. It may exist: look it up by our id first."""


class InvalidWebhook(Exception):
    """Signature missing or wrong, or the timestamp outside the replay window. Answer 401; record nothing."""


@dataclass(frozen=True, slots=True)
class BankReference:
    reference: str
    sort_code: str
    account_number: str
    account_name: str


@dataclass(frozen=True, slots=True)
class BankPayout:
    payout_id: str
    external_id: str
    status: str  # "pending" | "completed" | "failed"
    reason: str = ""


def verify_webhook(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
    window: int = REPLAY_WINDOW_SECONDS,
) -> None:
    """Check `X-Bank-Signature` (HMAC-SHA256 over "timestamp.body") and the timestamp's age.

    The timestamp is inside the signed text, so an attacker can't refresh an old capture; the window
    bounds how long a captured request can be replayed at all (duplicates inside it are harmless:
    the deposit saga is keyed by the bank's transaction id).
    """
    if not timestamp or not signature:
        raise InvalidWebhook("missing signature headers")
    try:
        ts = int(timestamp)
    except ValueError:
        raise InvalidWebhook("malformed timestamp") from None
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = [part[3:] for part in signature.split(",") if part.strip().startswith("v1=")]
    if not any(hmac.compare_digest(expected, g.strip()) for g in given):
        raise InvalidWebhook("bad signature")
    if abs((now if now is not None else time.time()) - ts) > window:
        raise InvalidWebhook("timestamp outside the replay window")


def bank_url(settings: Settings) -> str:
    """The configured bank; empty means the local sandbox outside production."""
    if settings.bank_url:
        return settings.bank_url.rstrip("/")
    if settings.is_production:
        raise RuntimeError("BANK_URL must be set in production")
    return f"http://127.0.0.1:{settings.sandbox_port + 3}"


class BankClient:
    """HTTP client of the bank's API."""

    name = "bank"

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout
        )

    @classmethod
    def from_settings(cls, settings: Settings, *, timeout: float = 10.0) -> BankClient:
        return cls(bank_url(settings), settings.bank_api_key, timeout=timeout)

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            r = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as e:
            raise BankRetryable(f"bank unreachable: {type(e).__name__}") from e
        if r.status_code >= 500 or r.status_code == 429:
            raise BankRetryable(f"bank answered {r.status_code}")
        return r

    async def customer_reference(self, external_id: str, name: str) -> BankReference:
        """The customer's unique payment reference (created on first call, the same afterwards)."""
        r = await self._call("POST", "/v1/virtual-accounts", json={"external_id": external_id, "name": name})
        if r.status_code >= 400:
            raise BankRefused(f"virtual account refused: {r.status_code} {r.text[:200]}")
        body = r.json()
        return BankReference(
            reference=body["reference"],
            sort_code=body["sort_code"],
            account_number=body["account_number"],
            account_name=body["account_name"],
        )

    async def create_payout(
        self,
        *,
        external_id: str,
        amount: Decimal,
        sort_code: str,
        account_number: str,
        name: str,
        reference: str,
    ) -> BankPayout:
        """Ask the bank to pay out. A timeout after sending raises BankAmbiguous (the payout may exist)."""
        body = {
            "external_id": external_id,
            "amount": format(amount, "f"),
            "currency": "GBP",
            "reference": reference,
            "destination": {"sort_code": sort_code, "account_number": account_number, "name": name},
        }
        try:
            r = await self._http.post("/v1/payouts", json=body)
        except httpx.ConnectError as e:  # never reached the bank: nothing happened
            raise BankRetryable(f"bank unreachable: {type(e).__name__}") from e
        except httpx.TransportError as e:  # sent, no answer: maybe created
            raise BankAmbiguous(f"no answer to payout {external_id}: {type(e).__name__}") from e
        if r.status_code >= 500:
            raise BankAmbiguous(f"bank answered {r.status_code} to payout {external_id}")
        if r.status_code == 429:
            raise BankRetryable("bank rate limit")
        if r.status_code >= 400:
            raise BankRefused(r.json().get("error", r.text[:200]) if r.content else str(r.status_code))
        return _payout(r.json())

    async def find_payout(self, external_id: str) -> BankPayout | None:
        """The payout we asked for under `external_id`, or None if the bank never received the request."""
        r = await self._call("GET", "/v1/payouts", params={"external_id": external_id})
        if r.status_code >= 400:
            raise BankRetryable(f"payout lookup failed: {r.status_code}")
        rows = r.json().get("payouts", [])
        return _payout(rows[0]) if rows else None


def _payout(body: dict[str, Any]) -> BankPayout:
    return BankPayout(
        payout_id=str(body["id"]),
        external_id=str(body["external_id"]),
        status=str(body.get("status") or "pending"),
        reason=str(body.get("reason") or ""),
    )


async def account_balance(client: BankClient) -> Decimal:
    """The safeguarding account's available balance (`GET /v1/accounts/{id}/balances`, the shape UK
    banking-as-a-service APIs and Open Banking use: a list of typed balances with credit/debit indicator)."""
    body = (await client._call("GET", "/v1/accounts/safeguarding/balances")).json()
    for b in body.get("balances", []):
        if b.get("type") == "InterimAvailable":
            amount = Decimal(str(b["amount"]["amount"]))
            return amount if b.get("creditDebitIndicator") == "Credit" else -amount
    raise ValueError("bank balance answer has no InterimAvailable balance")

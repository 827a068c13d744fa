"""A local Modulr-like bank-as-a-service: the broker's GBP rail in `make run` and the tests.

What it does, like the real thing:

- **Virtual accounts / references.** `POST /v1/virtual-accounts {"external_id", "name"}` gives a customer
  a unique payment reference on the broker's collection account (idempotent by `external_id`).
- **Inbound Faster Payments.** A tester "sends" money (`POST /_control/payments`, or the CLI below);
  the bank books it and POSTs a signed `payment.received` webhook to the broker.
- **Payouts.** `POST /v1/payouts {"external_id", "amount", "destination": {...}}` pays GBP out
  (idempotent by our `external_id`); a moment later a `payout.completed` or `payout.failed` webhook
  follows. `GET /v1/payouts?external_id=…` answers "did you get my request?" after a timeout.
- **Signed webhooks.** Headers `X-Bank-Timestamp: <unix seconds>` and
  `X-Bank-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`; the receiver checks
  the signature and that the timestamp is recent (replay window). Non-2xx answers are retried with
  back-off, as banks do, so receivers must be idempotent.

Faults (`POST /_control/faults {"kind", "count"?, ...}`, `DELETE /_control/faults`):
`payout_fail` (the payout is accepted, then fails: `reason`), `payout_reject` (refused at once, 422),
`payout_timeout` (the payout is created but the answer hangs `hang_ms`), `webhook_delay` (`delay_ms`
before each delivery), `webhook_duplicate` (each webhook delivered twice, concurrently),
`webhook_drop` (not delivered at all; the broker must ask). `GET /_control/webhooks` lists deliveries,
`POST /_control/webhooks/{id}/redeliver` sends one again, `POST /_control/reset` forgets everything.

Authentication of the API: `Authorization: Bearer <BANK_API_KEY>`. The webhook goes to
`BANK_WEBHOOK_URL` (default `http://127.0.0.1:$API_PORT/api/v1/webhooks/bank`), changeable with
`POST /_control/config {"webhook_url"}`.

CLI (a tester's bank app):

    python -m sandbox.bank send --reference BRK-3F9K2Q7A --amount 100.00 [--url http://127.0.0.1:8103]
    python -m sandbox.bank fault payout_fail [--count 1]
    python -m sandbox.bank payouts

Imports nothing of ours but the shared development secrets: the sandbox is the outside world.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from aiohttp import web

from config.settings import DEV_SECRETS

SIGNATURE_HEADER = "X-Bank-Signature"
TIMESTAMP_HEADER = "X-Bank-Timestamp"
COLLECTION_SORT_CODE = "040075"
COLLECTION_ACCOUNT = "10000001"
COLLECTION_NAME = "Broker Ltd Client Money"
_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: references are typed by people


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The webhook signature: hex HMAC-SHA256 over `"<timestamp>.<raw body>"`."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass
class VirtualAccount:
    id: str
    external_id: str
    name: str
    reference: str
    sort_code: str = COLLECTION_SORT_CODE
    account_number: str = COLLECTION_ACCOUNT
    account_name: str = COLLECTION_NAME


@dataclass
class Payout:
    id: str
    external_id: str
    amount: str
    currency: str
    destination: dict[str, str]
    reference: str
    status: str = "pending"  # pending -> completed | failed
    reason: str = ""
    created_at: str = ""


@dataclass
class Delivery:
    id: str
    event_id: str
    type: str
    body: str
    attempts: int = 0
    status: int | None = None
    delivered: bool = False
    error: str = ""


@dataclass
class BankState:
    api_key: str
    webhook_secret: str
    webhook_url: str
    accounts: dict[str, VirtualAccount] = field(default_factory=dict)  # by external_id
    payments: list[dict[str, Any]] = field(default_factory=list)
    payouts: dict[str, Payout] = field(default_factory=dict)  # by id
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    settle_after: float = 0.2  # seconds from payout request to its outcome

    def take(self, kind: str) -> dict[str, Any] | None:
        for fault in self.faults:
            if fault["kind"] == kind:
                if fault.get("count") is not None:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def peek(self, kind: str) -> dict[str, Any] | None:
        return next((f for f in self.faults if f["kind"] == kind), None)


STATE = web.AppKey("bank_state", BankState)
FAULT_KINDS = frozenset(
    {"payout_fail", "payout_reject", "payout_timeout", "webhook_delay", "webhook_duplicate", "webhook_drop"}
)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _new_reference() -> str:
    return "BRK-" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(8))


def _amount(value: Any) -> Decimal:
    """A positive GBP amount with at most 2 decimals, given as a string (never a float)."""
    if not isinstance(value, str):
        raise web.HTTPUnprocessableEntity(text=json.dumps({"error": "amount must be a string"}))
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise web.HTTPUnprocessableEntity(text=json.dumps({"error": "invalid amount"})) from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise web.HTTPUnprocessableEntity(text=json.dumps({"error": "amount must be positive pence"}))
    return amount


def _payer_for(reference: str) -> dict[str, str]:
    """A stable 'own bank account' per reference, so one customer always pays in from the same account."""
    digest = hashlib.sha256(reference.encode()).hexdigest()
    digits = str(int(digest, 16))
    return {"payer_sort_code": digits[:6], "payer_account_number": digits[6:14], "payer_name": "A Customer"}


# --- webhooks -------------------------------------------------------------------------------------


async def _deliver(state: BankState, delivery: Delivery) -> None:
    """POST the event, retrying non-2xx and network errors with back-off (receivers must be idempotent)."""
    delay = state.peek("webhook_delay")
    if delay:
        await asyncio.sleep(int(delay.get("delay_ms", 1000)) / 1000)
    body = delivery.body.encode()
    backoff = 0.2
    async with aiohttp.ClientSession() as http:
        for _ in range(6):
            delivery.attempts += 1
            ts = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: "v1=" + sign(state.webhook_secret, ts, body),
            }
            try:
                async with http.post(
                    state.webhook_url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=10)
                ) as r:
                    delivery.status = r.status
                    if 200 <= r.status < 300:
                        delivery.delivered = True
                        return
                    delivery.error = (await r.text())[:200]
            except (aiohttp.ClientError, TimeoutError) as e:
                delivery.error = type(e).__name__
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _spawn(state: BankState, coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


def emit(state: BankState, event_type: str, data: dict[str, Any]) -> Delivery | None:
    """Queue a webhook; faults may delay, duplicate or drop it."""
    event_id = "evt_" + secrets.token_hex(10)
    body = json.dumps({"id": event_id, "type": event_type, "created": _now(), "data": data})
    delivery = Delivery(id="dlv_" + secrets.token_hex(8), event_id=event_id, type=event_type, body=body)
    state.deliveries[delivery.id] = delivery
    if state.take("webhook_drop"):
        delivery.error = "dropped (fault)"
        return delivery
    copies = 2 if state.take("webhook_duplicate") else 1
    for i in range(copies):
        d = delivery
        if i:
            d = Delivery(id="dlv_" + secrets.token_hex(8), event_id=event_id, type=event_type, body=body)
            state.deliveries[d.id] = d
        _spawn(state, _deliver(state, d))
    return delivery


# --- handlers -------------------------------------------------------------------------------------


def _state(request: web.Request) -> BankState:
    return request.app[STATE]


def _authorised(request: web.Request) -> None:
    expected = f"Bearer {_state(request).api_key}"
    if not hmac.compare_digest(request.headers.get("Authorization", ""), expected):
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "invalid api key"}), content_type="application/json"
        )


async def create_virtual_account(request: web.Request) -> web.Response:
    _authorised(request)
    body = await request.json()
    state = _state(request)
    external_id = str(body.get("external_id") or "")
    if not external_id:
        return web.json_response({"error": "external_id required"}, status=422)
    account = state.accounts.get(external_id)
    status = 200
    if account is None:
        taken = {a.reference for a in state.accounts.values()}
        reference = _new_reference()
        while reference in taken:
            reference = _new_reference()
        account = VirtualAccount(
            id="va_" + secrets.token_hex(8),
            external_id=external_id,
            name=str(body.get("name") or ""),
            reference=reference,
        )
        state.accounts[external_id] = account
        status = 201
    return web.json_response(asdict(account), status=status)


async def send_payment(request: web.Request) -> web.Response:
    """A tester's Faster Payment into the broker's collection account under `reference`."""
    body = await request.json()
    state = _state(request)
    reference = str(body.get("reference") or "")
    amount = _amount(body.get("amount"))
    payer = _payer_for(reference)
    payer.update({k: str(body[k]) for k in payer if body.get(k)})
    payment = {
        "bank_tx_id": "fps_" + secrets.token_hex(12),
        "amount": str(amount),
        "currency": "GBP",
        "reference": reference,
        **payer,
        "received_at": _now(),
    }
    state.payments.append(payment)
    delivery = emit(state, "payment.received", payment)
    return web.json_response({**payment, "delivery_id": delivery.id if delivery else None}, status=202)


async def _settle(state: BankState, payout: Payout) -> None:
    await asyncio.sleep(state.settle_after)
    fail = state.take("payout_fail")
    if fail:
        payout.status = "failed"
        payout.reason = str(fail.get("reason") or "beneficiary account closed")
    else:
        payout.status = "completed"
    emit(
        state,
        f"payout.{payout.status}",
        {
            "payout_id": payout.id,
            "external_id": payout.external_id,
            "status": payout.status,
            "reason": payout.reason,
            "amount": payout.amount,
        },
    )


async def create_payout(request: web.Request) -> web.Response:
    _authorised(request)
    body = await request.json()
    state = _state(request)
    external_id = str(body.get("external_id") or "")
    if not external_id:
        return web.json_response({"error": "external_id required"}, status=422)
    existing = next((p for p in state.payouts.values() if p.external_id == external_id), None)
    if existing is not None:  # idempotent by the caller's id
        return web.json_response(asdict(existing), status=200)
    if state.take("payout_reject"):
        return web.json_response({"error": "payout refused: destination account invalid"}, status=422)
    amount = _amount(body.get("amount"))
    dest = body.get("destination") or {}
    if not (dest.get("sort_code") and dest.get("account_number")):
        return web.json_response({"error": "destination sort_code and account_number required"}, status=422)
    payout = Payout(
        id="po_" + secrets.token_hex(10),
        external_id=external_id,
        amount=str(amount),
        currency=str(body.get("currency") or "GBP"),
        destination={k: str(v) for k, v in dest.items()},
        reference=str(body.get("reference") or ""),
        created_at=_now(),
    )
    state.payouts[payout.id] = payout
    _spawn(state, _settle(state, payout))
    hang = state.take("payout_timeout")
    if hang:  # created, but the caller never hears back in time
        await asyncio.sleep(int(hang.get("hang_ms", 30_000)) / 1000)
    return web.json_response(asdict(payout), status=201)


async def get_payout(request: web.Request) -> web.Response:
    _authorised(request)
    payout = _state(request).payouts.get(request.match_info["id"])
    if payout is None:
        return web.json_response({"error": "unknown payout"}, status=404)
    return web.json_response(asdict(payout))


async def list_payouts(request: web.Request) -> web.Response:
    _authorised(request)
    external_id = request.query.get("external_id")
    rows = [
        asdict(p) for p in _state(request).payouts.values() if not external_id or p.external_id == external_id
    ]
    return web.json_response({"payouts": rows})


async def list_payments(request: web.Request) -> web.Response:
    return web.json_response({"payments": _state(request).payments})


async def list_accounts(request: web.Request) -> web.Response:
    return web.json_response({"accounts": [asdict(a) for a in _state(request).accounts.values()]})


async def add_fault(request: web.Request) -> web.Response:
    spec = await request.json()
    if spec.get("kind") not in FAULT_KINDS:
        return web.json_response({"error": f"kind must be one of {sorted(FAULT_KINDS)}"}, status=422)
    _state(request).faults.append(dict(spec))
    return web.json_response({"faults": _state(request).faults})


async def clear_faults(request: web.Request) -> web.Response:
    _state(request).faults.clear()
    return web.json_response({"faults": []})


async def list_webhooks(request: web.Request) -> web.Response:
    return web.json_response({"deliveries": [asdict(d) for d in _state(request).deliveries.values()]})


async def redeliver(request: web.Request) -> web.Response:
    state = _state(request)
    original = state.deliveries.get(request.match_info["id"])
    if original is None:
        return web.json_response({"error": "unknown delivery"}, status=404)
    again = Delivery(
        id="dlv_" + secrets.token_hex(8), event_id=original.event_id, type=original.type, body=original.body
    )
    state.deliveries[again.id] = again
    await _deliver(state, again)
    return web.json_response(asdict(again))


async def config(request: web.Request) -> web.Response:
    state = _state(request)
    if request.method == "POST":
        body = await request.json()
        if body.get("webhook_url"):
            state.webhook_url = str(body["webhook_url"])
        if body.get("settle_after") is not None:
            state.settle_after = float(body["settle_after"])
    return web.json_response({"webhook_url": state.webhook_url, "settle_after": state.settle_after})


async def reset(request: web.Request) -> web.Response:
    state = _state(request)
    state.accounts.clear()
    state.payments.clear()
    state.payouts.clear()
    state.deliveries.clear()
    state.faults.clear()
    return web.json_response({"ok": True})


# --- the safeguarding account's balance (reconciliation reads it) ---------------------------------

_ADJUST_KEY = "balance_adjustment"


def safeguarding_balance(state: BankState) -> Decimal:
    """Payments received minus payouts not failed (a payout is debited when accepted), plus any
    adjustment a test made behind the broker's back (`POST /_control/balance`)."""
    received = sum((Decimal(p["amount"]) for p in state.payments), Decimal(0))
    paid = sum((Decimal(p.amount) for p in state.payouts.values() if p.status != "failed"), Decimal(0))
    adjustment = Decimal(str(getattr(state, _ADJUST_KEY, "0")))
    return received - paid + adjustment


async def account_balances(request: web.Request) -> web.Response:
    """`GET /v1/accounts/{id}/balances` in the Open Banking shape UK banking-as-a-service APIs use."""
    _authorised(request)
    if request.match_info["id"] != "safeguarding":
        return web.json_response({"error": "unknown account"}, status=404)
    balance = safeguarding_balance(_state(request))
    entry = {
        "accountId": "safeguarding",
        "amount": {"amount": f"{abs(balance):.2f}", "currency": "GBP"},
        "creditDebitIndicator": "Credit" if balance >= 0 else "Debit",
        "dateTime": _now(),
    }
    return web.json_response(
        {"balances": [{**entry, "type": "InterimAvailable"}, {**entry, "type": "InterimBooked"}]}
    )


async def adjust_balance(request: web.Request) -> web.Response:
    """Test control: move the safeguarding balance by `delta` without any payment (a fault)."""
    state = _state(request)
    body = await request.json()
    current = Decimal(str(getattr(state, _ADJUST_KEY, "0")))
    try:
        delta = Decimal(str(body.get("delta")))
    except InvalidOperation:
        return web.json_response({"error": "delta must be a decimal string"}, status=422)
    setattr(state, _ADJUST_KEY, str(current + delta))
    return web.json_response({"balance": str(safeguarding_balance(state))})


def default_webhook_url() -> str:
    return os.environ.get("BANK_WEBHOOK_URL") or (
        f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}/api/v1/webhooks/bank"
    )


def create_app(
    api_key: str | None = None, *, webhook_secret: str | None = None, webhook_url: str | None = None
) -> web.Application:
    """The bank. Keys default to the environment, then to the development values."""
    state = BankState(
        api_key=api_key or os.environ.get("BANK_API_KEY") or DEV_SECRETS["bank_api_key"],
        webhook_secret=webhook_secret
        or os.environ.get("BANK_WEBHOOK_SECRET")
        or DEV_SECRETS["bank_webhook_secret"],
        webhook_url=webhook_url or default_webhook_url(),
    )
    app = web.Application()
    app[STATE] = state

    async def _cancel_tasks(app: web.Application) -> None:
        for task in list(state.tasks):
            task.cancel()
        for task in list(state.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    app.on_cleanup.append(_cancel_tasks)
    r = app.router
    r.add_post("/v1/virtual-accounts", create_virtual_account)
    r.add_post("/v1/payouts", create_payout)
    r.add_get("/v1/payouts", list_payouts)
    r.add_get("/v1/payouts/{id}", get_payout)
    r.add_get("/v1/accounts/{id}/balances", account_balances)
    r.add_post("/_control/balance", adjust_balance)
    r.add_post("/_control/payments", send_payment)
    r.add_get("/_control/payments", list_payments)
    r.add_get("/_control/accounts", list_accounts)
    r.add_post("/_control/faults", add_fault)
    r.add_delete("/_control/faults", clear_faults)
    r.add_get("/_control/webhooks", list_webhooks)
    r.add_post("/_control/webhooks/{id}/redeliver", redeliver)
    r.add_get("/_control/config", config)
    r.add_post("/_control/config", config)
    r.add_post("/_control/reset", reset)
    return app


# --- CLI ------------------------------------------------------------------------------------------


def _default_url() -> str:
    return os.environ.get("BANK_URL") or f"http://127.0.0.1:{int(os.environ.get('SANDBOX_PORT', '8100')) + 3}"


async def _cli(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        if args.command == "send":
            body: dict[str, str] = {"reference": args.reference, "amount": args.amount}
            if args.payer_name:
                body["payer_name"] = args.payer_name
            async with http.post(f"{args.url}/_control/payments", json=body) as r:
                out = await r.json()
        elif args.command == "fault":
            spec: dict[str, Any] = {"kind": args.kind}
            if args.count is not None:
                spec["count"] = args.count
            async with http.post(f"{args.url}/_control/faults", json=spec) as r:
                out = await r.json()
        elif args.command == "clear-faults":
            async with http.delete(f"{args.url}/_control/faults") as r:
                out = await r.json()
        else:
            async with http.get(
                f"{args.url}/v1/payouts", headers={"Authorization": f"Bearer {args.api_key}"}
            ) as r:
                out = await r.json()
    sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0 if r.status < 400 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.bank", description="Drive the sandbox bank.")
    parser.add_argument(
        "--url", default=_default_url(), help="the sandbox bank (default: BANK_URL or port +3)"
    )
    parser.add_argument("--api-key", default=os.environ.get("BANK_API_KEY") or DEV_SECRETS["bank_api_key"])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("send", help="send a Faster Payment to the broker under a customer's reference")
    p.add_argument("--reference", required=True)
    p.add_argument("--amount", required=True, help="GBP, e.g. 100.00")
    p.add_argument("--payer-name")
    p = sub.add_parser("fault", help="make the bank misbehave")
    p.add_argument("kind", choices=sorted(FAULT_KINDS))
    p.add_argument("--count", type=int)
    sub.add_parser("clear-faults", help="behave again")
    sub.add_parser("payouts", help="list payouts")
    return asyncio.run(_cli(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

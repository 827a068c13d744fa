# ruff: noqa: E501  (a demo script: its long lines are the printed output and the request bodies)
"""`make demo` / `python -m devstack demo`: a scripted customer journey against a running `make run`.

Over HTTP, like a customer's app: register and verify the email (the link is read from the mail sink),
enable 2FA, deposit £5,000 through the sandbox bank, pass the FCA first-trade gates, buy £1,000 of BTC,
sell half, withdraw £500, request a withdrawal above the approval threshold, approve it as a staff
approver (created with the operator CLI), and print the customer's ledger trail. Balances are printed after each step.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyotp

from config import get_settings
from devstack.totp_steps import STEP_S, next_step

PASSWORD = "Demo-Customer-9-horse"


class Demo:
    def __init__(self) -> None:
        s = get_settings()
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=30)
        self.bank_url = s.bank_url or f"http://127.0.0.1:{s.sandbox_port + 3}"
        self.mail_url = s.sendgrid_host or f"http://127.0.0.1:{s.sandbox_port + 4}"
        self.token = ""
        self.totp: pyotp.TOTP | None = None
        self.last_step = 0

    # --- helpers ---------------------------------------------------------------------------

    def step(self, title: str) -> None:
        print(f"\n== {title}")

    def h(self, *, totp: bool = False) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"}
        if totp:
            headers["X-TOTP-Code"] = self.code()
        return headers

    def code(self) -> str:
        """A code for an unused time step (each is accepted once): waits for the next one if needed."""
        assert self.totp is not None
        self.last_step = next_step(self.last_step)
        return self.totp.at(self.last_step * STEP_S)

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = self.api.request(method, path, **kw)
        if r.status_code >= 400:
            print(f"   {method} {path} -> {r.status_code} {r.text[:300]}")
        return r

    def show_order(self, created: httpx.Response) -> None:
        """Follow an order from 202 Accepted to its final state, as a client would."""
        if created.status_code != 202:
            print(f"   order refused: {created.status_code} {created.text[:300]}")
            return
        order = created.json()
        for _ in range(100):
            order = self.call("GET", f"/api/v1/orders/{order['id']}", headers=self.h()).json()
            if order["status"] not in ("PENDING", "ROUTED", "OPEN"):
                break
            time.sleep(0.2)
        execution = self.call("GET", f"/api/v1/orders/{order['id']}/execution", headers=self.h()).json()
        venues = ", ".join(order.get("venues") or []) or "-"
        print(
            f"   order {order['id']}: {order['status']} {order.get('filled_amount')} at "
            f"{order.get('average_price')} via {venues}, fee £{order.get('fee')}"
        )
        reason = (execution.get("record") or execution).get("reason") if isinstance(execution, dict) else None
        if reason:
            print(f"   best execution: {reason}")

    def balances(self) -> None:
        r = self.call("GET", "/api/v1/accounts/balances", headers=self.h())
        shown = ", ".join(
            f"{b['currency']} {b['balance']} (available {b['available']})" for b in r.json()["balances"]
        )
        print(f"   balances: {shown or 'none yet'}")

    def wait(self, what: str, check: Any, timeout: float = 60) -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        sys.exit(f"timed out waiting for {what}")

    def gbp(self) -> Decimal:
        r = self.call("GET", "/api/v1/accounts/balances", headers=self.h())
        return next(
            (Decimal(b["balance"]) for b in r.json()["balances"] if b["currency"] == "GBP"), Decimal(0)
        )

    def deposit(self, reference: str, amount: str) -> None:
        before = self.gbp()
        httpx.post(
            f"{self.bank_url}/_control/payments",
            json={"reference": reference, "amount": amount, "payer_name": "MS DANA DEMO"},
        )
        self.wait("the deposit", lambda: self.gbp() == before + Decimal(amount))

    def withdrawal(self, wid: str, *statuses: str) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            body: dict[str, Any] = self.call("GET", f"/api/v1/withdrawals/{wid}", headers=self.h()).json()
            return body if body["status"] in statuses else None

        result: dict[str, Any] = self.wait(f"withdrawal {' or '.join(statuses)}", check)
        return result

    def first_trade_gates(self) -> None:
        """FCA PS23/6, through the customer API: risk warning, 24 h cooling-off (5 s under `make run`),
        categorisation with its declaration, appropriateness assessment."""
        self.step("FCA first-trade gates: risk warning, cooling-off, categorisation, assessment")
        warning = self.call("GET", "/api/v1/onboarding/risk-warning", headers=self.h()).json()
        print(f"   {warning['text']}")
        self.call(
            "POST", "/api/v1/onboarding/risk-warning", json={"version": warning["version"]}, headers=self.h()
        ).raise_for_status()
        self.call(
            "POST", "/api/v1/onboarding/categorisation",
            json={"category": "high_net_worth", "declaration": {"accepted": True, "annual_income_gbp": "150000"}},
            headers=self.h(),
        ).raise_for_status()  # fmt: skip
        questions = self.call("GET", "/api/v1/onboarding/assessment", headers=self.h()).json()
        # The demo customer knows the answers: they are the questionnaire file's own (config/).
        spec = json.loads(Path(get_settings().appropriateness_questions_file).read_text(encoding="utf-8"))
        answers = {q["id"]: q["correct"] for q in spec["questions"]}
        result = self.call(
            "POST", "/api/v1/onboarding/assessment", json={"version": questions["version"], "answers": answers},
            headers=self.h(),
        ).json()  # fmt: skip
        print(f"   assessment passed: {result['passed']}")

        def open_gates() -> bool:
            gates = self.call("GET", "/api/v1/onboarding", headers=self.h()).json()
            return all(g["state"] == "done" for g in gates)

        self.wait("the cooling-off period (a durable timer in Temporal)", open_gates)
        print("   every gate passed")

    # --- the journey -----------------------------------------------------------------------

    def run(self) -> int:
        email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
        self.step(f"Register {email}")
        self.call(
            "POST",
            "/api/v1/auth/register",
            json={"email": email, "password": PASSWORD, "first_name": "Dana", "last_name": "Demo"},
        ).raise_for_status()

        self.step("Verify the email (link read from the mail sink)")
        mail = self.wait(
            "the verification mail",
            lambda: httpx.get(f"{self.mail_url}/messages", params={"to": email}).json(),
        )
        found = re.search(r"token=([A-Za-z0-9._\-]+)", json.dumps(mail[-1]))
        assert found, "no verification link in the mail"
        self.call("POST", "/api/v1/auth/verify-email", json={"token": found.group(1)}).raise_for_status()
        self.token = self.call(
            "POST", "/api/v1/auth/login", json={"email": email, "password": PASSWORD}
        ).json()["access_token"]
        subprocess.run([sys.executable, "-m", "cli", "set-kyc-tier", email, "3"], check=True)

        self.step("Enable 2FA")
        secret = self.call(
            "POST", "/api/v1/auth/2fa/enroll", json={"password": PASSWORD}, headers=self.h()
        ).json()["secret"]
        self.totp = pyotp.TOTP(secret)
        self.call(
            "POST", "/api/v1/auth/2fa/confirm", json={"code": self.code()}, headers=self.h()
        ).raise_for_status()
        print("   2FA on")

        self.step("Deposit £5,000 through the sandbox bank (Faster Payment under my reference)")
        ins = self.call(
            "GET", "/api/v1/deposits/instructions", params={"currency": "GBP"}, headers=self.h()
        ).json()
        print(
            f"   pay to {ins['sort_code']} {ins['account_number']} ({ins['account_name']}), reference {ins['reference']}"
        )
        self.deposit(ins["reference"], "5000.00")
        self.balances()

        self.first_trade_gates()

        self.step("Buy £1,000 of BTC")
        r = self.call(
            "POST", "/api/v1/orders", json={"symbol": "BTC-GBP", "side": "buy", "type": "market", "quote_amount": "1000.00"},
            headers=self.h(),
        )  # fmt: skip
        self.show_order(r)
        self.balances()
        held = self.call("GET", "/api/v1/accounts/balances", headers=self.h()).json()["balances"]
        btc = next((Decimal(b["available"]) for b in held if b["currency"] == "BTC"), Decimal(0))

        self.step("Sell half of it")
        half = (btc / 2).quantize(Decimal("0.00001"), rounding="ROUND_DOWN")  # the venues' BTC lot step
        if half > 0:
            r = self.call(
                "POST", "/api/v1/orders", json={"symbol": "BTC-GBP", "side": "sell", "type": "market", "amount": str(half)},
                headers=self.h(),
            )  # fmt: skip
            self.show_order(r)
        else:
            print("   no BTC to sell (the order endpoint did not fill)")
        self.balances()

        self.step("Confirm my bank account (the one I paid in from) for withdrawals, with my TOTP code")
        account = self.call("GET", "/api/v1/bank-accounts", headers=self.h()).json()[0]
        print(
            f"   {account['holder_name']} {account['sort_code']} {account['account_number']}: name check {account['name_match']}"
        )
        r = self.call("POST", f"/api/v1/bank-accounts/{account['id']}/confirm", headers=self.h(totp=True))
        r.raise_for_status()
        usable_from = r.json()["usable_from"]
        print(
            f"   confirmed; usable from {usable_from} (cooling-off, short under make run; an email was sent)"
        )
        wait_s = datetime.fromisoformat(usable_from).timestamp() - time.time()
        if wait_s > 120:
            sys.exit("the cooling-off period is long here: run the demo under `make run` (it sets 5 s)")
        time.sleep(max(wait_s, 0) + 0.5)

        self.step("Withdraw £500 to that account")
        r = self.call(
            "POST",
            "/api/v1/withdrawals",
            json={"currency": "GBP", "amount": "500.00", "bank_account_id": account["id"]},
            headers=self.h(totp=True),
        )
        w = self.withdrawal(r.json()["id"], "COMPLETED", "FAILED")
        print(f"   withdrawal {w['id']}: {w['status']}, fee £{w['fee']}, bank payout {w['provider_ref']}")
        self.balances()

        self.step("Deposit £15,000 more and request £12,000: above the £10,000 approval threshold")
        self.deposit(ins["reference"], "15000.00")
        r = self.call(
            "POST",
            "/api/v1/withdrawals",
            json={"currency": "GBP", "amount": "12000.00", "bank_account_id": account["id"]},
            headers=self.h(totp=True),
        )
        big = self.withdrawal(r.json()["id"], "AWAITING_APPROVAL")
        print(f"   withdrawal {big['id']}: {big['status']} (Temporal workflow {big['workflow_id']})")
        self.balances()

        self.step("Approve it as a staff approver (python -m cli create-staff … --role approver; admin API)")
        staff = f"approver-{uuid.uuid4().hex[:6]}@broker.example"
        out = subprocess.run(
            [sys.executable, "-m", "cli", "create-staff", staff, "--role", "approver"], check=True, capture_output=True, text=True
        ).stdout  # fmt: skip
        staff_password = out.rsplit("password=", 1)[1].strip()
        login = self.call("POST", "/api/v1/auth/login", json={"email": staff, "password": staff_password})
        staff_token = login.json().get("access_token", "")
        # Staff decisions need the second factor: the approver enrols 2FA like any user.
        staff_auth = {"Authorization": f"Bearer {staff_token}"}
        staff_secret = self.call(
            "POST", "/api/v1/auth/2fa/enroll", json={"password": staff_password}, headers=staff_auth
        ).json()["secret"]
        staff_totp = pyotp.TOTP(staff_secret)
        self.call("POST", "/api/v1/auth/2fa/confirm", json={"code": staff_totp.now()}, headers=staff_auth)
        r = self.call(
            "POST", f"/api/v1/admin/withdrawals/{big['id']}/approve", json={"reason": "source of funds checked"},
            headers={**staff_auth, "X-TOTP-Code": staff_totp.at(time.time() + 30)},  # next step: codes are single-use
        )  # fmt: skip
        print(f"   approve: {r.status_code} {r.text[:200]}")
        print(
            "   (the same from the Temporal CLI, with a token proving who decided: python -m cli approval-token "
            f"{staff} {big['id']} --action approve, then temporal workflow signal --workflow-id "
            f'{big["workflow_id"]} --name approve --input \'{{"approver_id": "<staff id>", "token": "<token>"}}\')'
        )
        w = self.withdrawal(big["id"], "COMPLETED", "FAILED", "REJECTED")
        print(f"   withdrawal {w['id']}: {w['status']}")
        self.balances()

        self.step("My ledger trail (newest first)")
        trail = self.call("GET", "/api/v1/accounts/ledger", params={"limit": 30}, headers=self.h()).json()
        for e in trail["entries"]:
            print(
                f"   {e['created_at'][:19]}  {e['reference_type']:<12} {e['currency']} {e['amount']:>16}  balance {e['balance_after']}"
            )
        return 0


def main() -> int:
    return Demo().run()

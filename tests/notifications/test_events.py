"""Every event reaches the mail sink with its own content (UK amounts, no reasons), and a login from a
new device writes its notification with the session it opens."""

# ruff: noqa: E501  (the table of samples reads best one event per entry)

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from services.notifications import NotificationEvent, enqueue
from services.notifications.events import Category, category_of
from services.notifications.templates import render
from tests.notifications.conftest import Stack, drain

WHEN = "2026-12-01T23:40:00+00:00"
ORDER = {"order_id": "o-1", "side": "sell", "symbol": "ETH-GBP", "quantity": "2.5", "price": "2400.1",
         "total_gbp": "6000.25"}  # fmt: skip
OPS = {"summary": "something for ops", "details": {"k": "v"}}

# event -> (payload, a line the subject must contain, a line the text must contain)
SAMPLES: dict[NotificationEvent, tuple[dict[str, Any], str, str]] = {
    NotificationEvent.DEPOSIT_CONFIRMED: ({"currency": "GBP", "amount": "1234.5", "balance": "10000"},
                                          "£1,234.50", "Your GBP balance is now £10,000.00."),
    NotificationEvent.WITHDRAWAL_REQUESTED: ({"withdrawal_id": "w-1", "currency": "BTC", "amount": "0.5"},
                                             "0.50000000 BTC", "is held in your account"),
    NotificationEvent.WITHDRAWAL_AWAITING_APPROVAL: ({"withdrawal_id": "w-2", "currency": "GBP", "amount": "60000"},
                                                     "Withdrawal under review", "is under review"),
    NotificationEvent.WITHDRAWAL_APPROVED: ({"withdrawal_id": "w-3", "currency": "GBP", "amount": "1"},
                                            "Withdrawal approved", "was approved"),
    NotificationEvent.WITHDRAWAL_COMPLETED: ({"withdrawal_id": "w-4", "currency": "ETH", "amount": "1.2"},
                                             "1.20000000 ETH", "has been sent"),
    NotificationEvent.WITHDRAWAL_FAILED: ({"withdrawal_id": "w-5", "currency": "GBP", "amount": "20"},
                                          "Withdrawal not completed", "available in your account again"),
    NotificationEvent.ORDER_FILLED: (ORDER, "Order filled: SELL ETH-GBP", "total £6,000.25"),
    NotificationEvent.ORDER_PARTIALLY_FILLED: ({**ORDER, "requested": "5"}, "partly filled",
                                               "2.50000000 ETH of 5.00000000 ETH"),
    NotificationEvent.ORDER_CANCELLED: ({"order_id": "o-2", "side": "buy", "symbol": "BTC-GBP"},
                                        "Order cancelled", "nothing was traded"),
    NotificationEvent.LARGE_TRADE: ({**ORDER, "total_gbp": "12500"}, "£12,500.00", "If this was not you"),
    NotificationEvent.KYC_STATUS_CHANGED: ({"status": "IN_REVIEW"}, "Identity verification: under review", ""),
    NotificationEvent.SECURITY_NEW_DEVICE: ({"when": WHEN, "ip": "198.51.100.7", "user_agent": "Firefox"},
                                            "New sign-in", "198.51.100.7"),
    NotificationEvent.SECURITY_PASSWORD_CHANGED: ({"when": WHEN, "ip": "198.51.100.7", "how": "changed"},
                                                  "password was changed", "2026-12-01 23:40 UTC"),
    NotificationEvent.SECURITY_2FA_ENABLED: ({"when": WHEN, "ip": "198.51.100.7"}, "turned on", "turned on"),
    NotificationEvent.SECURITY_2FA_DISABLED: ({"when": WHEN, "ip": "198.51.100.7"}, "turned off", "turned off"),
    NotificationEvent.SECURITY_SESSION_REVOKED: ({"when": WHEN, "ip": "198.51.100.7"}, "signed out", "signed out"),
    NotificationEvent.BANK_ACCOUNT_CONFIRMED: ({"account_ending": "6789", "usable_from": WHEN},
                                               "bank account", "ending 6789"),
    NotificationEvent.EMAIL_VERIFICATION: ({"link": "https://x.example/v?token=t", "valid_hours": 24},
                                           "Confirm your email", "https://x.example/v?token=t"),
    NotificationEvent.ACCOUNT_EXISTS: ({"reset_hint": "reset it"}, "Someone tried", "reset it"),
    NotificationEvent.PASSWORD_RESET: ({"link": "https://x.example/r#token=t", "token": "t", "valid_minutes": 30},
                                       "Reset your password", "30 minutes"),
    NotificationEvent.PRICE_ALERT: ({"symbol": "BTC-GBP", "direction": "above", "threshold": "90000",
                                     "price": "90012.34"}, "above £90,000.00", "now £90,012.34"),
    NotificationEvent.OPS_RECONCILIATION_MISMATCH: (OPS, "[OPS] Reconciliation mismatch", "k: v"),
    NotificationEvent.OPS_FLOAT_LOW: (OPS, "[OPS] Hot-wallet float low", "k: v"),
    NotificationEvent.OPS_FAILED_LOGINS: (OPS, "[OPS] Repeated failed logins", "k: v"),
    NotificationEvent.OPS_LARGE_WITHDRAWAL: (OPS, "[OPS] Withdrawal over £50,000", "k: v"),
    NotificationEvent.OPS_VENUE_DOWN: (OPS, "[OPS] Venue down", "k: v"),
    NotificationEvent.OPS_ALERT: (OPS, "[OPS] Ops alert", "k: v"),
}  # fmt: skip


def test_every_event_has_a_template_that_renders_its_sample() -> None:
    assert set(SAMPLES) == set(NotificationEvent)
    for event, (payload, subject, line) in SAMPLES.items():
        message = render(event, payload)
        assert subject in message.subject, event
        assert line in message.text, event
        assert message.short and "<html" in message.html, event


async def test_every_event_reaches_the_sink_with_its_content(stack: Stack) -> None:
    customer = await stack.customer()
    marker = uuid.uuid4().hex[:8]
    keys = {}
    async with stack.engine.begin() as conn:
        for event, (payload, _, _) in SAMPLES.items():
            ops = category_of(event) is Category.OPS
            body = {**payload, "summary": f"{payload['summary']} {marker}"} if ops else payload
            keys[event] = f"{event}:{uuid.uuid4()}"
            await enqueue(conn, event=event, user_id=None if ops else customer.id, payload=body,
                          dedupe_key=keys[event])  # fmt: skip

    async def all_sent() -> bool:
        for key in keys.values():
            found = await stack.deliveries(key)
            if not found or any(d["status"] not in ("SENT", "DELIVERED", "SKIPPED") for d in found.values()):
                return False
        return True

    await drain(stack.dispatcher(batch_size=200), all_sent, what="every event delivered")
    customer_mail = {m["subject"]: m for m in await stack.mails(customer.email)}
    ops_mail = [
        m["subject"] for m in await stack.mails(stack.settings.ops_alert_email) if marker in m["subject"]
    ]
    for event, (_, subject, line) in SAMPLES.items():
        if category_of(event) is Category.OPS:
            assert sum(subject in s for s in ops_mail) == 1, event
        else:
            [mail] = [m for s, m in customer_mail.items() if subject in s]
            assert line in mail["text"], event
    assert len(customer_mail) == len([e for e in SAMPLES if category_of(e) is not Category.OPS])


async def test_a_login_from_a_new_device_notifies_with_the_change(
    stack: Stack,
) -> None:
    customer = await stack.customer()
    async with stack.http() as h:
        r = await h.post("/api/v1/auth/login", json={"email": customer.email, "password": "Correct-Horse-9-battery"},
                         headers={"User-Agent": "Lynx/2.9"})  # fmt: skip
        assert r.status_code == 200
    async with stack.engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT event, payload FROM notification_outbox WHERE user_id = :u AND fanned_out_at IS NULL"
                ),
                {"u": customer.id},
            )
        ).all()
    assert [(e, p["user_agent"]) for e, p in rows] == [("security_new_device", "Lynx/2.9")]

    async def mailed() -> bool:
        return any(m["subject"].startswith("New sign-in") for m in await stack.mails(customer.email))

    await drain(stack.dispatcher(), mailed, what="the new-device mail")

"""The outbox and its dispatcher against the real sinks: written with the change or not at all, delivered
once per channel, exactly once across a dispatcher SIGKILLed mid-send, retried, dead-lettered, replayed."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from typing import Any

from sqlalchemy import text

from services.notifications import NotificationEvent, enqueue
from tests.notifications.conftest import Stack, drain, eventually, unique_phone

FILL = {
    "order_id": "8d1c1f9e",
    "side": "buy",
    "symbol": "BTC-GBP",
    "quantity": "0.015",
    "price": "82304.50",
    "total_gbp": "1234.57",
}


async def _enqueue(stack: Stack, user_id: uuid.UUID | None, event: str, payload: dict[str, Any]) -> str:
    key = f"{event}:{uuid.uuid4()}"
    async with stack.engine.begin() as conn:
        await enqueue(conn, event=event, user_id=user_id, payload=payload, dedupe_key=key)
    return key


async def test_the_outbox_row_exists_exactly_when_the_change_commits(stack: Stack) -> None:
    customer = await stack.customer()
    key = f"order_filled:{uuid.uuid4()}"
    async with stack.engine.connect() as conn:
        async with conn.begin() as tx:
            await enqueue(conn, event="order_filled", user_id=customer.id, payload=FILL, dedupe_key=key)
            await tx.rollback()  # the business change failed: no notification either
    async with stack.engine.begin() as conn:
        for _ in range(2):  # an activity retried after its commit enqueues once
            await enqueue(conn, event="order_filled", user_id=customer.id, payload=FILL, dedupe_key=key)
    async with stack.engine.connect() as conn:
        n = await conn.execute(
            text("SELECT count(*) FROM notification_outbox WHERE dedupe_key = :k"), {"k": key}
        )
        assert n.scalar_one() == 1


async def test_each_channel_gets_the_notification_once_with_uk_amounts(stack: Stack) -> None:
    customer = await stack.customer(phone=unique_phone())
    async with stack.http() as h:
        r = await h.put(
            "/api/v1/notifications/preferences",
            headers=customer.auth,
            json={"preferences": [{"category": "trading", "channel": "sms", "enabled": True}]},
        )
        assert r.status_code == 200, r.text
    key = await _enqueue(stack, customer.id, NotificationEvent.ORDER_FILLED, FILL)
    dispatcher = stack.dispatcher()

    async def settled() -> dict[str, Any] | None:
        found = await stack.deliveries(key)
        done = all(d["status"] in ("SENT", "DELIVERED") for d in found.values())
        return found if done and len(found) == 3 else None

    deliveries = await drain(dispatcher, settled, what="email, sms and in-app delivered")
    await dispatcher.run_once()  # another pass sends nothing more

    [mail] = await stack.mails(customer.email)
    assert mail["subject"] == "Order filled: BUY BTC-GBP"
    assert "BUY 0.01500000 BTC at £82,304.50 per BTC, total £1,234.57." in mail["text"]
    assert "<strong>£1,234.57</strong>" in mail["html"]
    assert mail["custom_args"]["delivery_id"] == str(deliveries["email"]["id"])
    assert mail["custom_args"]["notification_id"] == str(deliveries["email"]["outbox_id"])
    [sms] = await stack.sms(customer.phone or "")
    assert sms["body"].startswith("Broker: BUY 0.01500000 BTC at £82,304.50: total £1,234.57.")
    assert deliveries["sms"]["provider_message_id"] == sms["sid"]

    async with stack.http() as h:
        page = (await h.get("/api/v1/notifications", headers=customer.auth)).json()
        [item] = page["notifications"]
        assert item["title"] == "Order filled: BUY BTC-GBP" and item["read_at"] is None
        assert (await h.get("/api/v1/notifications/unread-count", headers=customer.auth)).json() == {
            "unread": 1
        }
        assert (
            await h.post(f"/api/v1/notifications/{item['id']}/read", headers=customer.auth)
        ).status_code == 204
        assert (await h.get("/api/v1/notifications/unread-count", headers=customer.auth)).json() == {
            "unread": 0
        }
        other = await stack.customer()
        assert (await h.get("/api/v1/notifications", headers=other.auth)).json()["notifications"] == []
        r = await h.post(f"/api/v1/notifications/{item['id']}/read", headers=other.auth)
        assert r.status_code == 404 and r.json()["code"] == "not_found"

    # The signed delivery reports arrive from the sandboxes and move the deliveries on.
    async def reported() -> bool:
        found = await stack.deliveries(key)
        return found["email"]["status"] == "DELIVERED" and found["sms"]["status"] == "DELIVERED"

    await eventually(reported, what="SendGrid and Twilio reported delivery")


def _dispatcher_process(stack: Stack, **env: str) -> subprocess.Popen[bytes]:
    s = stack.settings
    environment = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": s.database_url,
        "SENDGRID_HOST": s.sendgrid_host,
        "TWILIO_URL": s.twilio_url,
        "OPS_ALERT_WEBHOOK_URL": s.ops_alert_webhook_url,
        "PUBLIC_BASE_URL": s.public_base_url,
        "NOTIFICATION_POLL_SECONDS": "0.05",
        "NOTIFICATION_LEASE_SECONDS": "0.5",
        "NOTIFICATION_UNKNOWN_GRACE_SECONDS": "1",
        "NOTIFICATION_SEND_TIMEOUT_SECONDS": "60",
        **env,
    }
    return subprocess.Popen([sys.executable, "-m", "workers.notifications"], env=environment)


async def _kill(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGKILL)
    await asyncio.to_thread(process.wait)


async def test_dispatcher_killed_after_the_send_before_recording_it_delivers_exactly_once(
    stack: Stack,
) -> None:
    customer = await stack.customer()
    # No delivery report this time: the restarted dispatcher must find out by asking SendGrid.
    hook = await stack.sandbox(stack.mail_url, "GET", "/_control/event_webhook")
    await stack.sandbox(stack.mail_url, "POST", "/_control/event_webhook", json={"url": None})
    # The sink takes the mail, then holds its answer: the dispatcher is killed not knowing it was sent.
    await stack.sandbox(
        stack.mail_url,
        "POST",
        "/_control/faults",
        json={"kind": "timeout_after_accept", "count": 1, "hang_ms": 20000},
    )
    key = await _enqueue(stack, customer.id, NotificationEvent.ORDER_FILLED, FILL)
    process = _dispatcher_process(stack)
    try:
        await eventually(lambda: stack.mails(customer.email), what="the sink took the mail", limit=60)
        assert (await stack.deliveries(key))["email"]["status"] == "SENDING"
    finally:
        await _kill(process)

    restarted = stack.dispatcher()

    async def sent() -> bool:
        return (await stack.deliveries(key))["email"]["status"] in ("SENT", "DELIVERED")

    try:
        await drain(restarted, sent, what="the in-doubt send found at SendGrid and recorded")
    finally:
        await stack.sandbox(stack.mail_url, "POST", "/_control/event_webhook", json={"url": hook["url"]})
    delivery = (await stack.deliveries(key))["email"]
    assert delivery["status"] == "SENT" and delivery["attempts"] == 1  # looked up, not sent again
    [mail] = await stack.mails(customer.email)
    assert delivery["provider_message_id"] == mail["id"]


async def test_dispatcher_killed_before_the_send_arrived_delivers_exactly_once(stack: Stack) -> None:
    customer = await stack.customer()
    # The sink holds the request before acting on it; the dispatcher is killed meanwhile.
    await stack.sandbox(
        stack.mail_url,
        "POST",
        "/_control/faults",
        json={"kind": "hang_before_accept", "count": 1, "hang_ms": 300},
    )
    before = (await stack.sandbox(stack.mail_url, "GET", "/_control/event_webhook"))["dropped_requests"]
    key = await _enqueue(stack, customer.id, NotificationEvent.ORDER_FILLED, FILL)
    process = _dispatcher_process(stack)
    try:

        async def held() -> bool:
            faults_left = await stack.deliveries(key)
            return bool(faults_left) and faults_left["email"]["status"] == "SENDING"

        await eventually(held, what="the dispatcher claimed the delivery", limit=60)
        await asyncio.sleep(0.1)  # let the request reach the sink (either way the outcome must be one mail)
    finally:
        await _kill(process)

    async def dropped() -> bool:
        state = await stack.sandbox(stack.mail_url, "GET", "/_control/event_webhook")
        return bool(state["dropped_requests"] > before)

    await eventually(dropped, what="the sink dropped the dead sender's request")
    assert await stack.mails(customer.email) == []
    restarted = stack.dispatcher()

    async def sent() -> bool:
        return (await stack.deliveries(key))["email"]["status"] in ("SENT", "DELIVERED")

    await drain(restarted, sent, what="resent after SendGrid did not show it for the grace")
    assert (await stack.deliveries(key))["email"]["attempts"] == 2
    assert len(await stack.mails(customer.email)) == 1


async def test_known_failures_retry_then_dead_letter_and_ops_replay(stack: Stack) -> None:
    customer = await stack.customer()
    ops = await stack.staff("ops")
    # Not taken three times (429: the provider certainly did not send): dead after max_attempts (3).
    await stack.sandbox(
        stack.mail_url, "POST", "/_control/faults", json={"kind": "http_error", "status": 429, "count": 3}
    )
    key = await _enqueue(stack, customer.id, NotificationEvent.DEPOSIT_CONFIRMED,
                         {"currency": "GBP", "amount": "1500.00", "balance": "2750.5"})  # fmt: skip
    dispatcher = stack.dispatcher()

    async def dead() -> bool:
        return (await stack.deliveries(key))["email"]["status"] == "DEAD"

    await drain(dispatcher, dead, what="dead-lettered")
    delivery = (await stack.deliveries(key))["email"]
    assert delivery["attempts"] == 3 and "429" in delivery["last_error"]
    assert await stack.mails(customer.email) == []

    async with stack.http() as h:
        assert (
            await h.get("/api/v1/admin/notifications/dead-letters", headers=customer.auth)
        ).status_code == 403
        listed = (await h.get("/api/v1/admin/notifications/dead-letters", headers=ops.auth)).json()
        assert str(delivery["id"]) in [d["id"] for d in listed["deliveries"]]
        r = await h.post(f"/api/v1/admin/notifications/deliveries/{delivery['id']}/replay", headers=ops.auth)
        assert r.status_code == 204, r.text
        again = await h.post(
            f"/api/v1/admin/notifications/deliveries/{delivery['id']}/replay", headers=ops.auth
        )
        assert again.status_code == 409 and again.json()["code"] == "not_replayable"

    async def sent() -> bool:
        return (await stack.deliveries(key))["email"]["status"] in ("SENT", "DELIVERED")

    await drain(dispatcher, sent, what="the replayed delivery sent")
    [mail] = await stack.mails(customer.email)
    assert mail["subject"] == "Deposit credited: £1,500.00"
    assert "Your GBP balance is now £2,750.50." in mail["text"]


async def test_a_refused_message_is_dead_at_once(stack: Stack) -> None:
    customer = await stack.customer()
    await stack.sandbox(stack.mail_url, "POST", "/_control/faults", json={"kind": "refuse", "count": 1})
    key = await _enqueue(stack, customer.id, NotificationEvent.ORDER_FILLED, FILL)

    async def dead() -> bool:
        return (await stack.deliveries(key))["email"]["status"] == "DEAD"

    await drain(stack.dispatcher(), dead, what="dead-lettered on a 400")
    assert (await stack.deliveries(key))["email"]["attempts"] == 1


async def test_an_sms_whose_answer_timed_out_is_looked_up_not_resent(stack: Stack) -> None:
    customer = await stack.customer(phone=unique_phone())
    # Twilio takes the message, then its answer outlasts our timeout (2 s here): an unknown outcome.
    await stack.sandbox(
        stack.twilio_url,
        "POST",
        "/_control/faults",
        json={"kind": "timeout_after_accept", "count": 1, "hang_ms": 5000},
    )
    key = await _enqueue(stack, customer.id, NotificationEvent.SECURITY_2FA_ENABLED,
                         {"when": "2026-12-01T10:00:00+00:00", "ip": "203.0.113.9"})  # fmt: skip

    async def sms_sent() -> bool:
        return (await stack.deliveries(key)).get("sms", {}).get("status") in ("SENT", "DELIVERED")

    await drain(stack.dispatcher(), sms_sent, what="the timed-out SMS found at Twilio")
    delivery = (await stack.deliveries(key))["sms"]
    [sms] = await stack.sms(customer.phone or "")
    assert delivery["attempts"] == 1 and delivery["provider_message_id"] == sms["sid"]
    assert sms["body"].endswith(f"(ref {delivery['id'].hex[:8].upper()})")

"""Preferences are honoured (and security cannot be turned off), ops alerts reach the ops mailbox and
webhook, and delivery reports without the provider's signature are refused."""

from __future__ import annotations

import base64
import json
import time
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sandbox.mail import DEV_WEBHOOK_PRIVATE_KEY, sign_events
from sandbox.twilio import signature
from services.notifications import NotificationEvent, enqueue
from tests.notifications.conftest import Stack, drain, unique_phone


async def _enqueue(stack: Stack, user_id: uuid.UUID | None, event: str, payload: dict[str, object]) -> str:
    key = f"{event}:{uuid.uuid4()}"
    async with stack.engine.begin() as conn:
        await enqueue(conn, event=event, user_id=user_id, payload=payload, dedupe_key=key)
    return key


async def test_preferences_are_honoured_and_security_cannot_be_turned_off(stack: Stack) -> None:
    customer = await stack.customer(phone=unique_phone())
    async with stack.http() as h:
        r = await h.put(
            "/api/v1/notifications/preferences",
            headers=customer.auth,
            json={"preferences": [{"category": "security", "channel": "email", "enabled": False}]},
        )
        assert r.status_code == 422 and r.json()["code"] == "preference_locked"
        r = await h.put(
            "/api/v1/notifications/preferences",
            headers=customer.auth,
            json={"preferences": [{"category": "funds", "channel": "email", "enabled": False}]},
        )
        assert r.status_code == 200
        matrix = {(p["category"], p["channel"]): p for p in r.json()["preferences"]}
        assert matrix["funds", "email"]["enabled"] is False
        assert matrix["security", "sms"] == {
            "category": "security",
            "channel": "sms",
            "enabled": True,
            "locked": True,
        }
        assert matrix["trading", "sms"]["enabled"] is False  # SMS is opt-in outside security

    funds = await _enqueue(stack, customer.id, NotificationEvent.WITHDRAWAL_COMPLETED,
                           {"withdrawal_id": "w-1", "currency": "BTC", "amount": "0.25"})  # fmt: skip
    security = await _enqueue(stack, customer.id, NotificationEvent.SECURITY_2FA_DISABLED,
                              {"when": "2026-12-01T10:00:00+00:00", "ip": "203.0.113.9"})  # fmt: skip
    dispatcher = stack.dispatcher()

    async def security_sent() -> bool:
        found = await stack.deliveries(security)
        return len(found) == 3 and all(d["status"] in ("SENT", "DELIVERED") for d in found.values())

    await drain(dispatcher, security_sent, what="the security message on every channel")
    assert set(await stack.deliveries(funds)) == {"in_app"}  # email off, SMS never chosen
    [mail] = await stack.mails(customer.email)
    assert mail["subject"] == "Two-factor authentication turned off"
    [sms] = await stack.sms(customer.phone or "")
    assert "turned OFF" in sms["body"]
    async with stack.http() as h:
        titles = [
            n["title"]
            for n in (await h.get("/api/v1/notifications", headers=customer.auth)).json()["notifications"]
        ]
        assert titles == ["Two-factor authentication turned off", "Withdrawal sent: 0.25000000 BTC"]


async def test_ops_alerts_go_to_the_ops_mailbox_and_webhook(stack: Stack) -> None:
    alert: dict[str, object] = {"summary": "BTC hot float 1.2 below 3", "details": {"currency": "BTC"}}
    key = await _enqueue(stack, None, NotificationEvent.OPS_FLOAT_LOW, alert)

    async def sent() -> bool:
        found = await stack.deliveries(key)
        return len(found) == 2 and all(d["status"] in ("SENT", "DELIVERED") for d in found.values())

    await drain(stack.dispatcher(), sent, what="ops mailbox and webhook")
    mails = [m for m in await stack.mails(stack.settings.ops_alert_email) if "BTC hot float" in m["subject"]]
    assert len(mails) == 1 and mails[0]["subject"] == "[OPS] Hot-wallet float low: BTC hot float 1.2 below 3"
    hooks = [m for m in await stack.hooks() if "BTC hot float" in m["text"]]
    assert len(hooks) == 1 and hooks[0]["blocks"][0]["text"]["text"].startswith("*[OPS] Hot-wallet float low")


async def test_sendgrid_events_without_a_valid_signature_are_refused(stack: Stack) -> None:
    body = json.dumps([{"event": "bounce", "delivery_id": str(uuid.uuid4())}]).encode()
    now = str(int(time.time()))
    other_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    forged = sign_events(base64.b64encode(other_key).decode(), now, body)
    good = sign_events(DEV_WEBHOOK_PRIVATE_KEY, now, body)
    stale = str(int(time.time()) - 3600)
    url = "/api/v1/webhooks/sendgrid/events"
    sig, ts = "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"
    async with stack.http() as h:
        for headers in (
            {},
            {sig: forged, ts: now},
            {sig: good, ts: str(int(now) + 1)},  # the timestamp is signed too
            {sig: sign_events(DEV_WEBHOOK_PRIVATE_KEY, stale, body), ts: stale},  # replayed too late
            {sig: "not base64!", ts: now},
        ):
            r = await h.post(url, content=body, headers={"Content-Type": "application/json", **headers})
            assert r.status_code == 401, (headers, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "invalid_signature"
        r = await h.post(url, content=body, headers={"Content-Type": "application/json", sig: good, ts: now})
        assert r.status_code == 200 and r.json() == {"recorded": 0}


async def test_twilio_callbacks_without_a_valid_signature_are_refused(stack: Stack) -> None:
    delivery = uuid.uuid4()
    url = f"{stack.api_url}/api/v1/webhooks/twilio/status?delivery_id={delivery}"
    params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered", "To": "+447700900999"}
    async with stack.http() as h:
        for sig in (
            None,
            signature("wrong-token", url, params),
            signature(stack.settings.twilio_auth_token, url + "x", params),
        ):
            headers = {"X-Twilio-Signature": sig} if sig else {}
            r = await h.post(url, data=params, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["code"] == "invalid_signature"
        good = signature(stack.settings.twilio_auth_token, url, params)
        r = await h.post(url, data=params, headers={"X-Twilio-Signature": good})
        assert r.status_code == 200 and r.json() == {"recorded": 0}  # authentic, but no such delivery


async def test_a_bounce_is_recorded_from_the_signed_event_webhook(stack: Stack) -> None:
    uid = uuid.uuid4()
    customer = await stack.customer()
    async with stack.engine.begin() as c:
        from sqlalchemy import text

        await c.execute(
            text("UPDATE users SET email = :e WHERE id = :i"),
            {"e": f"bounce-{uid.hex[:8]}@example.com", "i": customer.id},
        )
    key = await _enqueue(stack, customer.id, NotificationEvent.SECURITY_PASSWORD_CHANGED,
                         {"when": "2026-12-01T10:00:00+00:00", "ip": "203.0.113.9"})  # fmt: skip

    async def bounced() -> bool:
        return (await stack.deliveries(key)).get("email", {}).get("status") == "BOUNCED"

    await drain(stack.dispatcher(), bounced, what="the bounce recorded")
    assert "does not exist" in (await stack.deliveries(key))["email"]["last_error"]

"""The SendGrid stand-in speaks the v3 protocol the official client uses, and `EmailSender` on top of it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from providers.email import (
    EmailDeliveryError,
    EmailSender,
    deposit_credited,
    new_device_alert,
    order_filled,
    verification_email,
    withdrawal_status,
)
from tests.api.conftest import MailSink, unique_email

VALID = {
    "personalizations": [{"to": [{"email": "a@example.com"}]}],
    "from": {"email": "no-reply@broker.example"},
    "subject": "hi",
    "content": [{"type": "text/plain", "value": "hello"}],
}


async def test_sink_checks_the_key_and_the_body(mail_sink: MailSink) -> None:
    async with httpx.AsyncClient(base_url=mail_sink.url) as c:
        r = await c.post("/v3/mail/send", json=VALID, headers={"Authorization": "Bearer SG.wrong"})
        assert r.status_code == 401 and r.json()["errors"][0]["message"]
        assert (await c.post("/v3/mail/send", json=VALID)).status_code == 401
        auth = {"Authorization": f"Bearer {mail_sink.api_key}"}
        r = await c.post(
            "/v3/mail/send", json={**VALID, "personalizations": [{"to": [{"email": "nope"}]}]}, headers=auth
        )
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "personalizations.0.to"
        r = await c.post(
            "/v3/mail/send", json={k: v for k, v in VALID.items() if k != "content"}, headers=auth
        )
        assert r.status_code == 400 and r.json()["errors"][0]["field"] == "content"
        r = await c.post("/v3/mail/send", content=b"{", headers={**auth, "content-type": "application/json"})
        assert r.status_code == 400


async def test_sender_delivers_every_template_through_the_official_client(
    mail_sink: MailSink, api_settings: object
) -> None:
    from config import Settings

    assert isinstance(api_settings, Settings)
    sender = EmailSender.from_settings(api_settings)
    to = unique_email("Templates")
    messages = [
        verification_email("http://x/verify?token=t", valid_hours=24),
        new_device_alert(when=datetime.now(UTC), ip="10.0.0.1", user_agent="<script>"),
        order_filled(
            order_id="o-1",
            side="buy",
            symbol="BTC/GBP",
            quantity=Decimal("0.01"),
            price=Decimal("50000"),
            total_gbp=Decimal("500.75"),
        ),
        withdrawal_status(withdrawal_id="w-1", currency="GBP", amount=Decimal("100"), status="COMPLETED"),
        deposit_credited(currency="GBP", amount=Decimal("250"), balance=Decimal("1250")),
    ]
    ids = [await sender.send(to, m) for m in messages]
    assert all(ids) and len(set(ids)) == len(ids)
    got = await mail_sink.messages(to=to.upper())
    assert [m["subject"] for m in got] == [m.subject for m in messages]
    assert got[1]["html"] and "<script>" not in got[1]["html"] and "&lt;script&gt;" in got[1]["html"]
    assert got[2]["from"] == api_settings.email_from and "£500.75" in got[2]["text"]

    async with httpx.AsyncClient(base_url=mail_sink.url) as c:
        before = len((await c.get("/messages")).json())
        assert before >= len(messages)


async def test_sender_raises_a_domain_error_when_refused_or_unreachable(mail_sink: MailSink) -> None:
    refused = EmailSender("SG.wrong", host=mail_sink.url, sender="no-reply@broker.example")
    with pytest.raises(EmailDeliveryError, match="401"):
        await refused.send("a@example.com", verification_email("http://x", valid_hours=1))
    from devstack.ports import free_port

    down = EmailSender("SG.x", host=f"http://127.0.0.1:{free_port()}", sender="no-reply@broker.example")
    with pytest.raises(EmailDeliveryError, match="unreachable"):
        await down.send("a@example.com", verification_email("http://x", valid_hours=1))

"""The notification channels (services/notifications/channels.py) over the outside world: SendGrid email
(customers and the ops mailbox), Twilio SMS, and a Slack-compatible ops webhook.

Each turns its client's errors into the dispatcher's three outcomes: certainly not taken
(`DeliveryFailed`, or `DeliveryRefused` for good), or maybe taken (`DeliveryUnknown`: a timeout, a 5xx or
a connection lost after the request left). And each can look a send up by the delivery's own id:

- SendGrid: the delivery id travels in `custom_args` (with the outbox id) and the Email Activity API is
  asked for it (`unique_args['delivery_id']="…"`).
- Twilio: messages carry no id of ours, so the SMS body ends with a short reference made from the delivery
  id, and the lookup lists the recipient's messages and matches the body.
- The ops webhook (Slack) keeps nothing to ask: an in-doubt post is resent after the grace, so ops may
  see an alert twice, never zero times. That is the one at-least-once channel, and it is ops-only.

Both official clients are synchronous; they run in worker threads so the event loop never waits on them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
from typing import Any

import httpx
import requests
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Content, CustomArg, Email, Mail, To
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from config import Settings
from services.notifications.channels import (
    DeliveryFailed,
    DeliveryJob,
    DeliveryRefused,
    DeliveryUnknown,
    LookupUnavailable,
)

SENDGRID_HOST = "https://api.sendgrid.com"
TWILIO_API = "https://api.twilio.com"


def sms_reference(job: DeliveryJob) -> str:
    return job.delivery_id.hex[:8].upper()


def sms_body(job: DeliveryJob) -> str:
    """The SMS text: the short form and the reference that lets a lost answer be looked up."""
    return f"Broker: {job.message.short} (ref {sms_reference(job)})"


def _status_class(status: int) -> type[Exception]:
    if status >= 500:
        return DeliveryUnknown  # the provider may have acted before failing
    if status in (400, 413, 404, 422):
        return DeliveryRefused
    return DeliveryFailed  # 401/403 (credentials), 429 (slow down): not taken; try again later


class SendGridChannel:
    """Email through the official `sendgrid` client: customer mail, or the ops mailbox (`fixed_to`)."""

    def __init__(self, api_key: str, *, host: str, sender: str, timeout: float) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        self._client.client.timeout = timeout
        self._sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridChannel:
        return cls(
            settings.sendgrid_api_key,
            host=settings.sendgrid_host or SENDGRID_HOST,
            sender=settings.email_from,
            timeout=settings.notification_send_timeout_seconds,
        )

    def _mail(self, job: DeliveryJob) -> Mail:
        mail = Mail(
            from_email=Email(self._sender),
            to_emails=To(job.recipient),
            subject=job.message.subject,
            plain_text_content=Content("text/plain", job.message.text),
            html_content=Content("text/html", job.message.html),
        )
        mail.add_custom_arg(CustomArg("delivery_id", str(job.delivery_id)))
        mail.add_custom_arg(CustomArg("notification_id", str(job.outbox_id)))
        mail.add_custom_arg(CustomArg("notification_event", job.event))
        return mail

    async def send(self, job: DeliveryJob) -> str:
        try:
            response = await asyncio.to_thread(self._client.send, self._mail(job))
        except HTTPError as e:
            raise _status_class(int(e.status_code))(f"SendGrid answered {e.status_code}") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, ConnectionRefusedError | socket.gaierror):
                raise DeliveryFailed(f"SendGrid unreachable: {type(e.reason).__name__}") from e
            raise DeliveryUnknown(f"SendGrid connection lost: {type(e.reason).__name__}") from e
        except ConnectionRefusedError as e:
            raise DeliveryFailed("SendGrid refused the connection") from e
        except OSError as e:  # timeouts, resets after the request left
            raise DeliveryUnknown(f"SendGrid did not answer: {type(e).__name__}") from e
        return str(response.headers.get("X-Message-Id", ""))

    async def lookup(self, job: DeliveryJob) -> str | None:
        query = {"query": f"unique_args['delivery_id']=\"{job.delivery_id}\"", "limit": 1}
        try:
            response = await asyncio.to_thread(self._client.client.messages.get, query_params=query)
        except (HTTPError, OSError) as e:
            raise LookupUnavailable(f"SendGrid activity: {type(e).__name__}") from e
        found: list[dict[str, Any]] = json.loads(response.body or b"{}").get("messages", [])
        return str(found[0].get("msg_id", "")) if found else None


class _SandboxHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client, with api.twilio.com replaced by another base URL (the sandbox)."""

    def __init__(self, base_url: str, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._base = base_url.rstrip("/")

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if url.startswith(TWILIO_API):
            url = self._base + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


class TwilioChannel:
    """SMS through the official `twilio` client, with signed status callbacks to our webhook."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str,
        callback_url: str,
        timeout: float,
    ) -> None:
        http = _SandboxHttpClient(base_url, timeout) if base_url else TwilioHttpClient(timeout=timeout)
        self._client = TwilioClient(account_sid, auth_token, http_client=http)
        self._from = from_number
        self._callback = callback_url

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioChannel:
        return cls(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token,
            from_number=settings.twilio_from_number,
            base_url=settings.twilio_url,
            callback_url=f"{settings.public_base_url.rstrip('/')}/api/v1/webhooks/twilio/status",
            timeout=settings.notification_send_timeout_seconds,
        )

    async def send(self, job: DeliveryJob) -> str:
        def create() -> Any:
            return self._client.messages.create(
                to=job.recipient,
                from_=self._from,
                body=sms_body(job),
                # Our delivery id in the (signed) callback URL: the report finds its delivery even if
                # it arrives before the message's SID is recorded.
                status_callback=f"{self._callback}?delivery_id={job.delivery_id}",
            )

        try:
            message = await asyncio.to_thread(create)
        except TwilioRestException as e:
            raise _status_class(int(e.status))(f"Twilio answered {e.status} (code {e.code})") from e
        except requests.exceptions.ConnectTimeout as e:
            raise DeliveryFailed("Twilio unreachable (connect timeout)") from e
        except requests.exceptions.Timeout as e:
            raise DeliveryUnknown("Twilio did not answer in time") from e
        except requests.exceptions.ConnectionError as e:
            if "refused" in str(e).lower() or "name or service" in str(e).lower():
                raise DeliveryFailed("Twilio unreachable") from e
            raise DeliveryUnknown("Twilio connection lost") from e
        return str(message.sid)

    async def lookup(self, job: DeliveryJob) -> str | None:
        body = sms_body(job)
        try:
            found = await asyncio.to_thread(self._client.messages.list, to=job.recipient, limit=200)
        except (TwilioRestException, requests.exceptions.RequestException) as e:
            raise LookupUnavailable(f"Twilio list: {type(e).__name__}") from e
        for message in found:
            if message.body == body:
                return str(message.sid)
        return None


class OpsWebhookChannel:
    """Ops alerts as Slack incoming-webhook JSON (`text` plus a section block)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        self._url = url
        self._timeout = timeout

    async def send(self, job: DeliveryJob) -> str:
        payload = {
            "text": job.message.short,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": f"*{job.message.subject}*"}},
                {"type": "section", "text": {"type": "plain_text", "text": job.message.text[:2900]}},
            ],
        }
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                r = await client.post(job.recipient or self._url, json=payload)
        except httpx.ConnectError as e:
            raise DeliveryFailed("ops webhook unreachable") from e
        except httpx.HTTPError as e:
            raise DeliveryUnknown(f"ops webhook: {type(e).__name__}") from e
        if r.status_code >= 300:
            raise _status_class(r.status_code)(f"ops webhook answered {r.status_code}")
        return ""

    async def lookup(self, job: DeliveryJob) -> str | None:
        return None  # Slack keeps nothing to ask: after the grace the alert is posted again


def build_senders(settings: Settings) -> dict[str, Any]:
    """Channel name -> sender, for a dispatcher in this process."""
    from models.notifications import Channel

    senders: dict[str, Any] = {}
    # Never the real SendGrid or Twilio from a dev or test box: there an empty URL means "not here".
    if settings.sendgrid_host or settings.is_production:
        email = SendGridChannel.from_settings(settings)
        senders[Channel.EMAIL.value] = senders[Channel.OPS_EMAIL.value] = email
    if settings.twilio_url or settings.is_production:
        senders[Channel.SMS.value] = TwilioChannel.from_settings(settings)
    senders[Channel.OPS_WEBHOOK.value] = OpsWebhookChannel(
        settings.ops_alert_webhook_url, timeout=settings.notification_send_timeout_seconds
    )
    return senders


class BackgroundDispatcher:
    """A dispatcher running as a task of this process (API or worker) until `stop()`."""

    def __init__(self, engine: Any, settings: Settings) -> None:
        from services.notifications.dispatcher import Dispatcher, policy_from_settings

        self._stop = asyncio.Event()
        dispatcher = Dispatcher(engine, build_senders(settings), policy_from_settings(settings))
        self._task = asyncio.create_task(dispatcher.run(self._stop), name="notification-dispatcher")

    async def stop(self) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=15)
        except TimeoutError:
            self._task.cancel()


def start_dispatcher(engine: Any, settings: Settings) -> BackgroundDispatcher | None:
    """The process's dispatcher, or None when `notification_dispatcher` is off."""
    return BackgroundDispatcher(engine, settings) if settings.notification_dispatcher else None

"""The providers' delivery reports: SendGrid's signed Event Webhook and Twilio's signed status callbacks.

Both are verified before anything is read (a forged report could mark a bounced security mail as
delivered): SendGrid signs timestamp + body with ECDSA P-256 (the public key is a setting); Twilio signs
the callback URL and its form parameters with HMAC-SHA1 under the account's auth token (checked with
twilio's own `RequestValidator`). Reports only move a delivery forward (SENDING/SENT -> DELIVERED ->
BOUNCED/DROPPED), so a repeated or late report changes nothing it should not.
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from twilio.request_validator import RequestValidator

from services.errors import DomainError


class InvalidCallbackSignature(DomainError):
    """The report is not signed by the provider (or is too old): refused, nothing recorded."""

    default_code = "invalid_signature"
    status = 401


class MalformedCallback(DomainError):
    """Signed, but not a report we can read. Nothing recorded."""

    default_code = "malformed_event"
    status = 400


def verify_sendgrid(
    public_key_b64: str,
    payload: bytes,
    signature_b64: str | None,
    timestamp: str | None,
    *,
    tolerance_seconds: int,
    now: float | None = None,
) -> None:
    """SendGrid's Event Webhook check: ECDSA P-256/SHA-256 of timestamp + payload, and a fresh timestamp."""
    if not signature_b64 or not timestamp:
        raise InvalidCallbackSignature("missing signature headers")
    try:
        sent_at = int(timestamp)
        key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
        signature = base64.b64decode(signature_b64, validate=True)
    except (ValueError, binascii.Error) as e:
        raise InvalidCallbackSignature("unreadable signature or timestamp") from e
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InvalidCallbackSignature("the configured key is not an EC public key")
    if abs((now if now is not None else time.time()) - sent_at) > tolerance_seconds:
        raise InvalidCallbackSignature("timestamp outside the tolerance")
    try:
        key.verify(signature, timestamp.encode() + payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise InvalidCallbackSignature("signature does not match") from e


def verify_twilio(auth_token: str, url: str, params: dict[str, str], signature: str | None) -> None:
    if not signature or not RequestValidator(auth_token).validate(url, params, signature):
        raise InvalidCallbackSignature("X-Twilio-Signature does not match")


_EMAIL_STATUS = {"delivered": "DELIVERED", "bounce": "BOUNCED", "dropped": "DROPPED"}
_SMS_STATUS = {"delivered": "DELIVERED", "undelivered": "BOUNCED", "failed": "BOUNCED"}
# Which states each report may move a delivery from.
_FROM = {
    "DELIVERED": ("SENDING", "SENT"),
    "BOUNCED": ("SENDING", "SENT", "DELIVERED"),
    "DROPPED": ("SENDING", "SENT", "DELIVERED"),
}

_RECORD = (
    "UPDATE notification_deliveries SET status = :status, last_error = :why, updated_at = now(), "
    "sent_at = coalesce(sent_at, now()), provider_message_id = coalesce(provider_message_id, :mid) "
    "WHERE id = :id AND channel = ANY(:channels) AND status = ANY(:from_states)"
)


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


async def record_sendgrid_events(engine: AsyncEngine, events: Any) -> int:
    """Apply SendGrid events (a JSON list) to their deliveries; returns how many changed one."""
    if not isinstance(events, list):
        raise MalformedCallback("the body must be a list of events")
    changed = 0
    async with engine.begin() as conn:
        for event in events:
            if not isinstance(event, dict):
                raise MalformedCallback("each event must be an object")
            status = _EMAIL_STATUS.get(str(event.get("event")))
            delivery_id = _uuid(event.get("delivery_id"))
            if status is None or delivery_id is None:
                continue  # processed/open/click, or mail that is not a notification
            result = await conn.execute(
                text(_RECORD),
                {
                    "status": status,
                    "why": str(event.get("reason") or "")[:2000] or None,
                    "mid": str(event.get("sg_message_id", "")).split(".")[0] or None,
                    "id": delivery_id,
                    "channels": ["email", "ops_email"],
                    "from_states": list(_FROM[status]),
                },
            )
            changed += result.rowcount
    return changed


async def record_twilio_status(engine: AsyncEngine, delivery_id: str | None, params: dict[str, str]) -> bool:
    """Apply one Twilio status callback to the delivery named in its (signed) URL."""
    target = _uuid(delivery_id)
    if target is None or "MessageStatus" not in params:
        raise MalformedCallback("not a Twilio status callback for a delivery")
    status = _SMS_STATUS.get(params["MessageStatus"])
    if status is None:
        return False  # queued/sending/sent: nothing new
    async with engine.begin() as conn:
        result = await conn.execute(
            text(_RECORD),
            {
                "status": status,
                "why": f"Twilio error {params['ErrorCode']}" if params.get("ErrorCode") else None,
                "mid": params.get("MessageSid"),
                "id": target,
                "channels": ["sms"],
                "from_states": list(_FROM[status]),
            },
        )
    return bool(result.rowcount)

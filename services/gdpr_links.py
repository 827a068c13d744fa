"""The emailed download link of a data export: a token signed with our JWT key under its own audience and
type, bound to the export and to the customer, expiring with the file (services/gdpr_requests.py decides
what a download may see), and the email that carries it."""

from __future__ import annotations

import html
import secrets
import uuid
from datetime import UTC, datetime

import jwt

from config import Settings
from providers.email import EmailMessage
from services.errors import DomainError

LINK_AUDIENCE = "broker-gdpr-export"
LINK_TYPE = "gdpr_export"
_ALGORITHM = "HS256"


class ExportLinkInvalid(DomainError):
    """The download link is not one we issued for this export and customer. Use the link from the email."""

    default_code = "export_link_invalid"
    status = 403


class ExportLinkExpired(DomainError):
    """The download link has expired (and the file is deleted). Request a new export."""

    default_code = "export_link_expired"
    status = 410


def link_token(
    settings: Settings, request_id: uuid.UUID, user_id: uuid.UUID, *, now: datetime, expires_at: datetime
) -> str:
    """One export's link token: signed, bound to the export and its owner, valid until `expires_at`."""
    payload = {
        "typ": LINK_TYPE,
        "aud": LINK_AUDIENCE,
        "sub": str(user_id),
        "eid": str(request_id),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(payload, settings.jwt_secret, algorithm=_ALGORITHM)


def download_link(settings: Settings, request_id: uuid.UUID, token: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/api/v1/account/export/{request_id}?token={token}"


def check(settings: Settings, token: str, request_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """Refuse a token that is expired (`ExportLinkExpired`) or not ours for this export and owner."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[_ALGORITHM],
            audience=LINK_AUDIENCE,
            options={"require": ["typ", "aud", "sub", "eid", "exp"]},
        )
    except jwt.ExpiredSignatureError as e:
        raise ExportLinkExpired("this download link has expired; request a new export") from e
    except jwt.PyJWTError as e:
        raise ExportLinkInvalid("this download link is not valid", field="query.token") from e
    if claims["typ"] != LINK_TYPE or claims["eid"] != str(request_id) or claims["sub"] != str(user_id):
        raise ExportLinkInvalid("this download link is not valid", field="query.token")


def export_ready_email(link: str, *, expires_at: datetime) -> EmailMessage:
    stamp = expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return EmailMessage(
        subject="Your data export is ready",
        text=(
            "The copy of your personal data you asked for is ready.\n\nSign in to the app and open this link "
            f"to download it:\n{link}\n\nThe link works until {stamp}; after that the file is deleted "
            "and you can ask for a new one. If you did not ask for this, contact support.\n"
        ),
        html=(
            "<!doctype html><html><body><h1>Your data export is ready</h1>"
            f'<p><a href="{html.escape(link)}">Download my data</a> (sign in first)</p>'
            f"<p>The link works until {html.escape(stamp)}; after that the file is deleted and you can ask "
            "for a new one. If you did not ask for this, contact support.</p></body></html>"
        ),
    )

"""Transactional email through SendGrid's official client (docs/architecture.md §C.9), and the message
templates.

The client is synchronous (urllib underneath), so `EmailSender.send` runs it in a worker thread; the event
loop never waits on SendGrid. `settings.sendgrid_host` points it at the local mail sink (`sandbox/mail.py`)
in `make run` and the tests, and is empty (SendGrid itself) in production.

Templates are plain functions returning an `EmailMessage` (subject, text, HTML) so a later notification
service can render the same mail from a Temporal activity. Every value interpolated into HTML is escaped.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Content, Email, Mail, To

from config import Settings

SENDGRID_HOST = "https://api.sendgrid.com"


@dataclass(frozen=True, slots=True)
class EmailMessage:
    subject: str
    text: str
    html: str


class EmailDeliveryError(RuntimeError):
    """SendGrid refused or could not take the message. Callers log it and let the user ask again
    (e.g. resend the verification link); the action that triggered the mail is not undone."""


class EmailSender:
    """Sends `EmailMessage`s from one fixed sender address."""

    def __init__(
        self, api_key: str, *, host: str = SENDGRID_HOST, sender: str, timeout: float = 10.0
    ) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=host.rstrip("/"))
        # The client waits forever by default; a hung SendGrid must not pin worker threads.
        self._client.client.timeout = timeout
        self._sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailSender:
        return cls(
            settings.sendgrid_api_key,
            host=settings.sendgrid_host or SENDGRID_HOST,
            sender=settings.email_from,
        )

    async def send(self, to: str, message: EmailMessage) -> str:
        """Deliver one message; returns SendGrid's message id."""
        mail = Mail(
            from_email=Email(self._sender),
            to_emails=To(to),
            subject=message.subject,
            plain_text_content=Content("text/plain", message.text),
            html_content=Content("text/html", message.html),
        )
        try:
            response = await asyncio.to_thread(self._client.send, mail)
        except HTTPError as e:
            raise EmailDeliveryError(f"SendGrid answered {e.status_code}") from e
        except OSError as e:
            raise EmailDeliveryError(f"SendGrid unreachable: {type(e).__name__}") from e
        return str(response.headers.get("X-Message-Id", ""))


def _page(title: str, *paragraphs: str) -> str:
    """Minimal HTML body; `paragraphs` are already-escaped HTML fragments."""
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<!doctype html><html><body><h1>{html.escape(title)}</h1>{body}</body></html>"


def verification_email(link: str, *, valid_hours: int) -> EmailMessage:
    return EmailMessage(
        subject="Confirm your email address",
        text=(
            "Welcome to Broker.\n\nConfirm your email address by opening this link:\n"
            f"{link}\n\nThe link is valid for {valid_hours} hours.\n"
            "If you did not sign up, ignore this email.\n"
        ),
        html=_page(
            "Confirm your email address",
            f'<a href="{html.escape(link)}">Confirm my email address</a>',
            f"The link is valid for {valid_hours} hours. If you did not sign up, ignore this email.",
        ),
    )


def account_exists_email(*, reset_hint: str) -> EmailMessage:
    """To the owner of an address someone tried to register again (the API answered as for a new one)."""
    return EmailMessage(
        subject="Someone tried to sign up with your email address",
        text=(
            "Someone (maybe you) tried to open a Broker account with this email address, which already has "
            f"one. Nothing was changed.\n\nIf it was you, sign in instead; if you forgot your password, "
            f"{reset_hint}.\nIf it was not you, you can ignore this email.\n"
        ),
        html=_page(
            "Someone tried to sign up with your email address",
            "Someone (maybe you) tried to open a Broker account with this email address, which already has "
            "one. Nothing was changed.",
            f"If it was you, sign in instead; if you forgot your password, {html.escape(reset_hint)}.",
            "If it was not you, you can ignore this email.",
        ),
    )


def password_reset_email(*, token: str, link: str, valid_minutes: int) -> EmailMessage:
    return EmailMessage(
        subject="Reset your password",
        text=(
            "A password reset was requested for your Broker account.\n\nChoose a new password here:\n"
            f"{link}\n\nor send this reset token with your new password to "
            f"POST /api/v1/auth/password-reset/confirm:\n{token}\n\n"
            f"It works once, for {valid_minutes} minutes. Every device will be signed out.\n"
            "If you did not ask for this, ignore this email: your password stays as it is.\n"
        ),
        html=_page(
            "Reset your password",
            f'<a href="{html.escape(link)}">Choose a new password</a>',
            f"It works once, for {valid_minutes} minutes. Every device will be signed out.",
            "If you did not ask for this, ignore this email: your password stays as it is.",
        ),
    )


def password_changed_alert(*, when: datetime, ip: str) -> EmailMessage:
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    return EmailMessage(
        subject="Your Broker password was reset",
        text=(
            f"The password of your account was reset.\n\nWhen: {stamp}\nIP address: {ip}\n\n"
            "Every session was signed out. If this was not you, contact support at once.\n"
        ),
        html=_page(
            "Your Broker password was reset",
            f"When: {html.escape(stamp)}<br>IP address: {html.escape(ip)}",
            "Every session was signed out. If this was not you, contact support at once.",
        ),
    )


def new_device_alert(*, when: datetime, ip: str, user_agent: str) -> EmailMessage:
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    return EmailMessage(
        subject="New sign-in to your Broker account",
        text=(
            f"Your account was signed in to from a new device.\n\nWhen: {stamp}\nIP address: {ip}\n"
            f"Device: {user_agent}\n\n"
            "If this was not you, change your password and sign out all sessions now.\n"
        ),
        html=_page(
            "New sign-in to your Broker account",
            "Your account was signed in to from a new device.",
            f"When: {html.escape(stamp)}<br>IP address: {html.escape(ip)}<br>"
            f"Device: {html.escape(user_agent)}",
            "If this was not you, change your password and sign out all sessions now.",
        ),
    )


def order_filled(
    *, order_id: str, side: str, symbol: str, quantity: Decimal, price: Decimal, total_gbp: Decimal
) -> EmailMessage:
    line = f"{side.upper()} {quantity} {symbol} at {price} — total £{total_gbp}"
    return EmailMessage(
        subject=f"Order filled: {side.upper()} {symbol}",
        text=f"Your order {order_id} was filled.\n\n{line}\n",
        html=_page("Order filled", f"Your order {html.escape(order_id)} was filled.", html.escape(line)),
    )


def withdrawal_status(
    *, withdrawal_id: str, currency: str, amount: Decimal, status: str, reason: str | None = None
) -> EmailMessage:
    extra = f" Reason: {reason}." if reason else ""
    line = f"Your withdrawal of {amount} {currency} ({withdrawal_id}) is now {status}.{extra}"
    return EmailMessage(
        subject=f"Withdrawal {status.lower()}: {amount} {currency}",
        text=line + "\n",
        html=_page("Withdrawal update", html.escape(line)),
    )


def deposit_credited(*, currency: str, amount: Decimal, balance: Decimal) -> EmailMessage:
    line = f"{amount} {currency} has been credited to your account. Your balance is {balance} {currency}."
    return EmailMessage(
        subject=f"Deposit credited: {amount} {currency}",
        text=line + "\n",
        html=_page("Deposit credited", html.escape(line)),
    )


def bank_account_confirmed(*, account_ending: str, usable_from: datetime) -> EmailMessage:
    """Sent when a bank account is confirmed as a withdrawal destination: if the customer's login was
    taken over, this mail and the cooling-off period are their chance to stop it."""
    stamp = usable_from.strftime("%Y-%m-%d %H:%M UTC")
    first = f"The bank account ending {account_ending} was confirmed for GBP withdrawals."
    second = f"It can receive withdrawals from {stamp}."
    third = "If this was not you, contact support and change your password now: we will stop it."
    return EmailMessage(
        subject="A bank account was added for withdrawals",
        text=f"{first}\n{second}\n\n{third}\n",
        html=_page(
            "A bank account was added for withdrawals", html.escape(first), html.escape(second), third
        ),
    )

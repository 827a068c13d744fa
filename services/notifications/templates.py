"""Rendering a notification from its outbox payload: Jinja2 templates, one file per event
(`templates/<event>.j2`, ops events share `ops.j2`), each with four blocks: `subject`, `text` (the plain
mail), `short` (SMS and the in-app body) and `html` (the mail's body, placed in `_layout.html.j2`).

Two environments read the same files: HTML autoescaped, text not (a plain-text mail must not show `&amp;`).
Undefined values are errors: a payload missing a field fails loudly at render time in tests, not as an
empty line in a customer's mail. Filters: `gbp` (£1,234.56), `asset(currency)` (crypto at scale),
`stamp` (an ISO time as `2026-12-01 23:40 UTC`).

No AML or screening reason ever reaches these templates (no tipping off): a withdrawal held for review is
`withdrawal_awaiting_approval` ("under review") and KYC statuses map to the fixed wording of
`services.kyc.customer_message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template
from markupsafe import Markup

from services.notifications.events import Category, NotificationEvent, category_of
from services.notifications.formatting import asset_amount, gbp

TEMPLATES = Path(__file__).with_name("templates")

OPS_TITLES = {
    NotificationEvent.OPS_RECONCILIATION_MISMATCH: "Reconciliation mismatch",
    NotificationEvent.OPS_FLOAT_LOW: "Hot-wallet float low",
    NotificationEvent.OPS_FAILED_LOGINS: "Repeated failed logins",
    NotificationEvent.OPS_LARGE_WITHDRAWAL: "Withdrawal over £50,000",
    NotificationEvent.OPS_VENUE_DOWN: "Venue down",
    NotificationEvent.OPS_ALERT: "Ops alert",
}


# Every status not named here reads "under review": the customer never learns why (no tipping off).
KYC_STATUS_WORDS = {
    "APPROVED": "approved",
    "REJECTED": "rejected",
    "RESUBMIT_REQUESTED": "resubmit requested",
    "EXPIRED": "expired",
}


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    subject: str
    text: str
    html: str
    short: str


def _stamp(value: Any) -> str:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _environment(*, html: bool) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=html,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    env.filters["gbp"] = gbp
    env.filters["asset"] = asset_amount
    env.filters["stamp"] = _stamp
    return env


@cache
def _environments() -> tuple[Environment, Environment]:
    return _environment(html=False), _environment(html=True)


def _block(template: Template, name: str, values: dict[str, Any]) -> str:
    return "".join(template.blocks[name](template.new_context(values))).strip()


def _values(event: NotificationEvent, payload: dict[str, Any]) -> dict[str, Any]:
    values = dict(payload)
    if category_of(event) is Category.OPS:
        values.setdefault("details", {})
        values["event_title"] = OPS_TITLES[event]
    if event is NotificationEvent.KYC_STATUS_CHANGED:
        from models.kyc import KycStatus
        from services.kyc import customer_message

        status = KycStatus(payload["status"])
        message = customer_message(status)
        comment = payload.get("moderation_comment")  # the vendor's words to the applicant, never ours
        if status is KycStatus.RESUBMIT_REQUESTED and comment:
            message = f"{message} {comment}"
        values["message"] = message
        values["status_words"] = KYC_STATUS_WORDS.get(status.value, "under review")
    if "symbol" in values and "base" not in values:
        values["base"] = str(values["symbol"]).split("-")[0].split("/")[0]
    return values


def render(event: str, payload: dict[str, Any]) -> RenderedMessage:
    """The subject, plain text, HTML and short form of one notification."""
    kind = NotificationEvent(event)
    name = "ops.j2" if category_of(kind) is Category.OPS else f"{kind.value}.j2"
    text_env, html_env = _environments()
    values = _values(kind, payload)
    plain = text_env.get_template(name)
    subject = _block(plain, "subject", values)
    body = Markup(_block(html_env.get_template(name), "html", values))
    html = html_env.get_template("_layout.html.j2").render(title=subject, body=body)
    return RenderedMessage(
        subject=subject,
        text=_block(plain, "text", values) + "\n",
        html=html,
        short=_block(plain, "short", values),
    )

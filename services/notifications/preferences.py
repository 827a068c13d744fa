"""Per-customer, per-category, per-channel choices, and the rule that some cannot be turned off.

A category's channels default to `DEFAULTS` until the customer says otherwise (a row in
`notification_preferences`). Security messages go out on every channel the customer has an address for,
whatever the rows say (`MANDATORY`); account mails (verification, password reset) go by email only and
never into the in-app feed or an SMS (they carry single-use links).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.notifications import Channel
from services.errors import DomainError
from services.notifications.events import MANDATORY, Category

CUSTOMER_CHANNELS = (Channel.EMAIL, Channel.SMS, Channel.IN_APP)
# Categories a customer sees in their settings (ACCOUNT and OPS are not theirs to choose).
CHOOSABLE = (Category.FUNDS, Category.TRADING, Category.KYC, Category.SECURITY, Category.PRICE_ALERTS)

DEFAULTS: dict[Category, frozenset[Channel]] = {
    Category.FUNDS: frozenset({Channel.EMAIL, Channel.IN_APP}),
    Category.TRADING: frozenset({Channel.EMAIL, Channel.IN_APP}),
    Category.KYC: frozenset({Channel.EMAIL, Channel.IN_APP}),
    Category.SECURITY: frozenset(CUSTOMER_CHANNELS),
    Category.PRICE_ALERTS: frozenset({Channel.EMAIL, Channel.IN_APP}),
    Category.ACCOUNT: frozenset({Channel.EMAIL}),
}


class PreferenceLocked(DomainError):
    """The customer tried to turn off a message that cannot be turned off (security). Nothing was changed."""

    default_code = "preference_locked"
    status = 422


class UnknownPreference(DomainError):
    """The category or channel is not one a customer can choose. Nothing was changed."""

    default_code = "unknown_preference"
    status = 422


@dataclass(frozen=True, slots=True)
class Preference:
    category: str
    channel: str
    enabled: bool
    locked: bool


async def _rows(conn: AsyncConnection, user_id: uuid.UUID) -> dict[tuple[str, str], bool]:
    result = await conn.execute(
        text("SELECT category, channel, enabled FROM notification_preferences WHERE user_id = :u"),
        {"u": user_id},
    )
    return {(c, ch): bool(e) for c, ch, e in result.all()}


async def channels_for(conn: AsyncConnection, user_id: uuid.UUID, category: Category) -> list[Channel]:
    """The channels a notification of `category` goes to for this customer."""
    if category is Category.ACCOUNT or category in MANDATORY:
        return sorted(DEFAULTS[category])
    chosen = await _rows(conn, user_id)
    return [
        channel
        for channel in CUSTOMER_CHANNELS
        if chosen.get((category.value, channel.value), channel in DEFAULTS[category])
    ]


async def list_preferences(conn: AsyncConnection, user_id: uuid.UUID) -> list[Preference]:
    chosen = await _rows(conn, user_id)
    return [
        Preference(
            category=category.value,
            channel=channel.value,
            enabled=category in MANDATORY
            or chosen.get((category.value, channel.value), channel in DEFAULTS[category]),
            locked=category in MANDATORY,
        )
        for category in CHOOSABLE
        for channel in CUSTOMER_CHANNELS
    ]


async def set_preferences(
    conn: AsyncConnection, user_id: uuid.UUID, changes: list[tuple[str, str, bool]]
) -> list[Preference]:
    """Apply (category, channel, enabled) changes all or nothing; returns the whole matrix after them."""
    for category, channel, enabled in changes:
        if category not in {c.value for c in CHOOSABLE}:
            raise UnknownPreference(f"no such category: {category}", field="category")
        if channel not in {c.value for c in CUSTOMER_CHANNELS}:
            raise UnknownPreference(f"no such channel: {channel}", field="channel")
        if Category(category) in MANDATORY and not enabled:
            raise PreferenceLocked("security messages cannot be turned off", field="enabled")
    for category, channel, enabled in changes:
        await conn.execute(
            text(
                "INSERT INTO notification_preferences (user_id, category, channel, enabled) "
                "VALUES (:u, :c, :ch, :e) ON CONFLICT (user_id, category, channel) "
                "DO UPDATE SET enabled = EXCLUDED.enabled, updated_at = now()"
            ),
            {"u": user_id, "c": category, "ch": channel, "e": enabled},
        )
    return await list_preferences(conn, user_id)

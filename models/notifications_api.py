"""API schemas of the notification endpoints: the in-app feed, preferences, and ops' dead letters."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CategoryName = Literal["funds", "trading", "kyc", "security", "price_alerts"]
ChannelName = Literal["email", "sms", "in_app"]


class NotificationOut(BaseModel):
    id: uuid.UUID
    category: str
    title: str
    body: str
    created_at: datetime
    read_at: datetime | None


class NotificationPage(BaseModel):
    notifications: list[NotificationOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null at the end."
    )


class UnreadCount(BaseModel):
    unread: int


class MarkedRead(BaseModel):
    marked: int


class PreferenceOut(BaseModel):
    category: CategoryName
    channel: ChannelName
    enabled: bool
    locked: bool = Field(description="True where the message cannot be turned off (security).")


class PreferencesOut(BaseModel):
    preferences: list[PreferenceOut]


class PreferenceChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: CategoryName
    channel: ChannelName
    enabled: bool


class PreferencesUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferences: list[PreferenceChange] = Field(min_length=1, max_length=50)


class DeadDeliveryOut(BaseModel):
    id: uuid.UUID
    outbox_id: uuid.UUID
    event: str
    user_id: uuid.UUID | None
    channel: str
    recipient: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class DeadLetterPage(BaseModel):
    deliveries: list[DeadDeliveryOut]
    next_cursor: str | None = None


class CallbackAck(BaseModel):
    recorded: int
